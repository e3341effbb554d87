"""``gan-train --mode vae`` / ``--mode ae`` (kinds ``vae`` / ``ae``): G alone, trained as the
decoder of an auto-encoder.

The lecture's first way to generate (docs/lecture.md): an encoder maps a real image to a code,
G (the decoder, the GAN's generator architecture, so it is served by the same code) maps the
code back, and both minimise a pixel loss. Nothing ever judges a whole image, which is why the
samples come out blurry.

* kind ``vae`` (``--mode vae``, or ``--mode ae`` with the default ``--ae-kind vae``): a
  variational auto-encoder (Kingma and Welling 2014). The encoder gives ``mu`` and
  ``log sigma^2``; the code is ``z = mu + sigma * eps``; the loss per image is the pixel loss
  plus ``KL(N(mu, sigma^2) || N(0, I))``, so the codes follow the prior and ``G(z)`` for
  ``z ~ N(0, I)`` is a sample.
* kind ``ae`` (``--mode ae --ae-kind plain``): ``z = code``, pixel loss only. Its codes go
  wherever reconstruction wants them, so decoding prior latents (which is how it is sampled,
  like every kind) fails: the lecture's reason for the KL term.

The pixel loss is the binary cross-entropy between the target and the decoder's pixels, both
mapped from [-1, 1] to [0, 1] (a Bernoulli decoder, as in Kingma and Welling's MNIST VAE),
summed over the pixels; both terms are averaged over the batch. Everything else (EMA of the
decoder, BatchNorm re-estimation on prior latents at export, checkpoints, exact resume, grids,
quick FID, logs) is the loop's. Checkpoints hold the decoder as ``generator.safetensors`` and the
encoder as ``encoder.safetensors``; no D is built or saved.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gan.models import build_encoder, init_weights
from training.objectives.base import Objective, register, with_memory_format

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


@register("vae", "ae")
class AEObjective(Objective):
    """The decoder (the loop's G) and an encoder, updated together by one optimiser."""

    hint: ClassVar[str] = "lower --lr-g"

    def setup(self) -> None:
        cfg, loop = self.cfg, self.loop
        torch.manual_seed(cfg.seed + 6)
        encoder = build_encoder(self.mc, variational=self.kind.variational)
        init_weights(encoder)
        self.encoder: nn.Module = encoder.to(loop.device)
        if cfg.channels_last:
            self.encoder = with_memory_format(self.encoder, torch.channels_last)
        torch.manual_seed(cfg.seed)
        params = [*loop.g.parameters(), *self.encoder.parameters()]
        self.optimisers = {
            "opt_g": torch.optim.Adam(params, lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
        }

    def state(self) -> dict[str, Any]:
        return {"encoder": self.encoder.state_dict()}

    def load_state(self, s: dict[str, Any]) -> None:
        self.encoder.load_state_dict(s["encoder"])

    def step(self) -> dict[str, float]:
        loop = self.loop
        real_u8, _ = loop.batches.next()
        x = loop.prep(real_u8)
        loop.g.train()
        self.encoder.train()
        with loop.autocast():
            mu, logvar = self.encoder(x)
            if logvar is not None:  # the reparameterisation z = mu + sigma * eps
                eps = torch.randn(mu.shape, generator=loop.z_gen).to(loop.device)
                z = mu + torch.exp(0.5 * logvar) * eps
            else:
                z = mu
            decoded = loop.g(z)
        recon = pixel_loss(decoded.float(), x.float())
        kl = kl_to_prior(mu.float(), logvar.float()) if logvar is not None else recon.new_zeros(())
        loss = recon + kl
        opt = self.optimisers["opt_g"]
        opt.zero_grad(set_to_none=True)
        loop.scaler.scale(loss).backward()
        loop.scaler.step(opt)
        loop.scaler.update()
        return {"loss": loss.item(), "recon_loss": recon.item(), "kl_loss": kl.item()}

    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        return {
            "loss": f"{stats['loss']:.2f}",
            "recon": f"{stats['recon_loss']:.2f}",
            "kl": f"{stats['kl_loss']:.2f}",
        }

    def checkpoint_parts(
        self, exported: nn.Module, d: nn.Module | None
    ) -> tuple[dict[str, Any], dict[str, nn.Module | None]]:
        encoder = with_memory_format(copy.deepcopy(self.encoder), torch.contiguous_format).eval()
        networks: dict[str, nn.Module | None] = {
            "generator": exported,
            "discriminator": None,
            "encoder": encoder,
        }
        return {"kind": self.kind.name}, networks
