"""Train a GAN's optional encoder E on G's own samples (the start of a projection).

E (:class:`gan.models.LatentEncoder`) maps an image to the latent G drew it from and, for a
conditional G, to logits of its class. Training needs no data, only the frozen generator: draw
``z ~ N(0, I)`` (and a class), make ``x = G(z, y)``, and minimise

* the latent loss ``|E(x)_z - z|^2`` (mean over dimensions),
* the class loss, cross-entropy of ``E(x)``'s class logits against ``y`` (conditional only),
* the pixel loss ``|G(E(x)_z, y) - x|^2`` in ``[0, 1]`` units, weighted by ``pixel_weight``
  (what the projection finally measures; through the frozen G).

``gan-train-encoder`` and ``gan-train --export`` write the result into the checkpoint
(:func:`gan.checkpoint.add_encoder`); gan/projection.py starts from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan.models import LatentEncoder, ModelConfig, build_latent_encoder


@dataclass(frozen=True)
class EncoderOptions:
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    pixel_weight: float = 1.0
    seed: int = 0
    #: Stop after this many seconds (0: no limit; the steps still bound it).
    time_budget_s: float = 0.0


@dataclass
class EncoderReport:
    """How the training went (stored in config.json under ``encoder``)."""

    steps: int
    seconds: float
    latent_mse: float  # on fresh samples, after training
    pixel_mse: float  # of G(E(G(z))) against G(z), [0, 1] units
    class_accuracy: float | None  # on fresh samples; None for an unconditional G
    options: dict[str, object]

    def as_config(self) -> dict[str, object]:
        return {
            "trained_on": "generator samples",
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "latent_mse": round(self.latent_mse, 5),
            "pixel_mse": round(self.pixel_mse, 5),
            "class_accuracy": None
            if self.class_accuracy is None
            else round(self.class_accuracy, 4),
            "options": self.options,
        }


def _draw(
    mc: ModelConfig, n: int, gen: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None]:
    z = torch.randn(n, mc.z_dim, generator=gen).to(device)
    y = torch.randint(0, mc.num_classes, (n,), generator=gen).to(device) if mc.conditional else None
    return z, y


def _losses(
    encoder: LatentEncoder,
    generator: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor | None,
    pixel_weight: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    with torch.no_grad():
        x = generator(z) if y is None else generator(z, y)  # [B, C, R, R]
    code, logits = encoder(x)
    latent = (code - z).pow(2).mean()
    loss = latent
    stats = {"latent": float(latent.detach())}
    if logits is not None and y is not None:
        ce = F.cross_entropy(logits, y)
        loss = loss + ce
        stats["class"] = float(ce.detach())
    if pixel_weight > 0:
        rec = generator(code) if y is None else generator(code, y)
        pixel = (rec - x).pow(2).mean() / 4.0
        loss = loss + pixel_weight * pixel
        stats["pixel"] = float(pixel.detach())
    return loss, stats


def train_encoder(
    generator: nn.Module,
    model_config: ModelConfig,
    options: EncoderOptions,
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[LatentEncoder, EncoderReport]:
    """Train a :class:`LatentEncoder` for this (frozen, eval-mode) generator."""
    device = next(generator.parameters()).device
    generator.eval()
    for p in generator.parameters():
        p.requires_grad_(False)
    encoder = build_latent_encoder(model_config, seed=options.seed).to(device).train()
    opt = torch.optim.Adam(encoder.parameters(), lr=options.lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(options.seed)
    started = time.perf_counter()
    step = 0
    try:  # steps=0: an untrained encoder (a baseline for its report)
        for step in range(1, options.steps + 1):
            z, y = _draw(model_config, options.batch_size, gen, device)
            loss, stats = _losses(encoder, generator, z, y, options.pixel_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            elapsed = time.perf_counter() - started
            if log is not None and (step % 250 == 0 or step == 1):
                shown = "  ".join(f"{k} {v:.4f}" for k, v in stats.items())
                log(f"encoder step {step}/{options.steps}  {shown}  ({elapsed:.0f} s)")
            if options.time_budget_s and elapsed >= options.time_budget_s:
                break
    finally:
        for p in generator.parameters():
            p.requires_grad_(True)
    seconds = time.perf_counter() - started
    encoder.eval()
    report = evaluate_encoder(encoder, generator, model_config, seed=options.seed + 1)
    report.steps, report.seconds, report.options = step, seconds, asdict(options)
    return encoder, report


@torch.no_grad()
def evaluate_encoder(
    encoder: LatentEncoder, generator: nn.Module, mc: ModelConfig, *, seed: int, n: int = 512
) -> EncoderReport:
    """Latent MSE, reconstruction MSE and class accuracy on ``n`` fresh samples of G."""
    device = next(generator.parameters()).device
    z, y = _draw(mc, n, torch.Generator().manual_seed(seed), device)
    x = generator(z) if y is None else generator(z, y)
    code, logits = encoder(x)
    rec = generator(code) if y is None else generator(code, y)
    accuracy = None
    if logits is not None and y is not None:
        accuracy = float((logits.argmax(1) == y).float().mean())
    return EncoderReport(
        steps=0,
        seconds=0.0,
        latent_mse=float((code - z).pow(2).mean()),
        pixel_mse=float((rec - x).pow(2).mean() / 4.0),
        class_accuracy=accuracy,
        options={},
    )
