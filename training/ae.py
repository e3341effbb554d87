"""``gan-train --mode ae``: G alone, trained as the decoder of an auto-encoder.

The lecture's first way to generate (docs/lecture.md): an encoder maps a real image to a code,
G (the decoder, the GAN's generator architecture, so it is served by the same code) maps the
code back, and both minimise a pixel loss. Nothing ever judges a whole image, which is why the
samples come out blurry.

* ``--ae-kind vae`` (default): a variational auto-encoder (Kingma and Welling 2014). The encoder
  gives ``mu`` and ``log sigma^2``; the code is ``z = mu + sigma * eps``; the loss per image is
  the pixel loss plus ``KL(N(mu, sigma^2) || N(0, I))``, so the codes follow the prior and
  ``G(z)`` for ``z ~ N(0, I)`` is a sample.
* ``--ae-kind plain``: ``z = code``, pixel loss only. Its codes go wherever reconstruction
  wants them, so decoding prior latents (which is how it is sampled, like every kind) fails:
  the lecture's reason for the KL term.

The pixel loss is the binary cross-entropy between the target and the decoder's pixels, both
mapped from [-1, 1] to [0, 1] (a Bernoulli decoder, as in Kingma and Welling's MNIST VAE),
summed over the pixels; both terms are averaged over the batch. Everything else (EMA of the
decoder, BatchNorm re-estimation on prior latents at export, checkpoints, exact resume, grids,
quick FID, logs) is :class:`training.loop.Trainer`'s. Checkpoints are of kind ``vae`` or
``ae``: the decoder as ``generator.safetensors`` and the encoder as ``encoder.safetensors``;
no D.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan.models import build_encoder, init_weights
from training.config import TrainConfig
from training.data import ImageData
from training.loop import Trainer, check_finite, with_memory_format

#: Probabilities are clipped to [EPS, 1 - EPS] in the pixel loss.
EPS = 1e-6


def pixel_loss(decoded: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of images in [-1, 1] mapped to [0, 1], summed over the pixels and
    averaged over the batch: ``[B, C, R, R]`` x 2 -> scalar."""
    p = ((decoded + 1.0) * 0.5).clamp(EPS, 1.0 - EPS)
    t = (target + 1.0) * 0.5
    return F.binary_cross_entropy(p, t, reduction="sum") / decoded.shape[0]


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` summed over the code, averaged over the batch."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1).mean()


class AETrainer(Trainer):
    """The auto-encoder's training step on :class:`Trainer`'s machinery (``self.g`` is the
    decoder; ``self.opt_g`` updates the decoder and the encoder; D is unused)."""

    def __init__(self, cfg: TrainConfig, data: ImageData, out_dir: Path, **kwargs: Any) -> None:
        super().__init__(cfg, data, out_dir, **kwargs)
        self.variational = cfg.ae_kind == "vae"
        torch.manual_seed(cfg.seed + 6)
        encoder = build_encoder(self.mc, variational=self.variational)
        init_weights(encoder)
        self.encoder: nn.Module = encoder.to(self.device)
        if cfg.channels_last:
            self.encoder = with_memory_format(self.encoder, torch.channels_last)
        torch.manual_seed(cfg.seed)
        params = [*self.g.parameters(), *self.encoder.parameters()]
        self.opt_g = torch.optim.Adam(params, lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))

    def state(self) -> dict[str, Any]:
        return {**super().state(), "encoder": self.encoder.state_dict()}

    def load_state(self, s: dict[str, Any]) -> None:
        super().load_state(s)
        self.encoder.load_state_dict(s["encoder"])

    def train_step(self) -> dict[str, float]:
        real_u8, _ = self.batches.next()
        x = self._prep(real_u8)
        self.g.train()
        self.encoder.train()
        with self._autocast():
            mu, logvar = self.encoder(x)
            if logvar is not None:  # the reparameterisation z = mu + sigma * eps
                eps = torch.randn(mu.shape, generator=self.z_gen).to(self.device)
                z = mu + torch.exp(0.5 * logvar) * eps
            else:
                z = mu
            decoded = self.g(z)
        recon = pixel_loss(decoded.float(), x.float())
        kl = kl_to_prior(mu.float(), logvar.float()) if logvar is not None else recon.new_zeros(())
        loss = recon + kl
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt_g)
        self.scaler.update()
        self.update_ema()
        self.step += 1
        stats = {"loss": loss.item(), "recon_loss": recon.item(), "kl_loss": kl.item()}
        return check_finite(stats, self.step, "lower --lr-g")

    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        return {
            "loss": f"{stats['loss']:.2f}",
            "recon": f"{stats['recon_loss']:.2f}",
            "kl": f"{stats['kl_loss']:.2f}",
        }

    def d_gap(self, g: nn.Module, drawn: Any = None) -> float | None:
        return None  # no D

    def checkpoint_parts(
        self, g: nn.Module, d: nn.Module
    ) -> tuple[dict[str, Any], dict[str, nn.Module | None]]:
        encoder = with_memory_format(copy.deepcopy(self.encoder), torch.contiguous_format).eval()
        return {"kind": self.cfg.kind}, {"generator": g, "discriminator": None, "encoder": encoder}
