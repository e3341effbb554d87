"""From training networks to servable checkpoints: the run's checkpoint folder and export.

* :func:`recalibrate_batchnorm` makes the EMA generator's BatchNorm statistics fit its weights.
* :func:`real_score_quantiles` records D's logits on held-out real images (the service's
  realness percentile).
* :class:`CheckpointManager` keeps ``<run>/checkpoints/step-*`` plus ``latest`` and ``best``.
* :func:`export_checkpoint` publishes a validated copy without the training state.

Reading and writing the files themselves is :mod:`gan.checkpoint`'s job.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan.checkpoint import (
    CheckpointError,
    copy_checkpoint,
    is_checkpoint,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from gan.sampling import score

QUANTILE_LEVELS = 1000  # real_scores stores 1001 quantiles (levels 0, 0.001, ..., 1)


@torch.no_grad()
def recalibrate_batchnorm(
    generator: nn.Module,
    z_dim: int,
    seed: int,
    batches: int = 8,
    batch_size: int = 256,
    num_classes: int = 0,
) -> nn.Module:
    """Copy of ``generator`` whose BatchNorm running statistics match its own weights.

    The EMA generator's weights are an average, so the running statistics it inherited from
    the raw generator do not quite fit them; re-estimating them (cumulative average over a few
    batches from a fixed seed) makes eval-mode outputs match what the weights can do, and makes
    every image depend on its own latent only.
    """
    g = copy.deepcopy(generator)
    norms = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return g.eval()
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    g.train()
    gen = torch.Generator().manual_seed(seed)
    device = next(g.parameters()).device
    for _ in range(batches):
        z = torch.randn(batch_size, z_dim, generator=gen).to(device)
        if num_classes:
            g(z, torch.randint(num_classes, (batch_size,), generator=gen).to(device))
        else:
            g(z)
    for m, mom in saved:
        m.momentum = mom
    return g.eval()


def real_score_quantiles(
    discriminator: nn.Module,
    images: torch.Tensor,
    source: str,
    batch_size: int = 1000,
    labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """D's logits on held-out real images (with their true classes for a conditional D),
    summarised as 1001 quantiles for percentiles."""
    was_training = discriminator.training
    discriminator.eval()
    logits = score(discriminator, images, labels, chunk=batch_size)
    discriminator.train(was_training)
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS + 1)
    q = np.quantile(logits.double().numpy(), levels)
    return {
        "levels": [round(float(x), 6) for x in levels],
        "quantiles": [float(x) for x in q],
        "num_images": len(images),
        "source": source,
        "mean_logit": float(logits.mean()),
    }


class CheckpointManager:
    """Manages ``<run>/checkpoints/step-XXXXXXXX`` directories plus ``best`` and ``latest``.

    ``latest`` and ``best`` are full copies (not symlinks), so each is a complete checkpoint on
    its own and survives the pruning of step directories. ``best`` is the checkpoint with the
    lowest training metric (the quick FID).
    """

    def __init__(self, run_dir: Path, keep_last: int = 3) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def step_dir(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def step_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if p.is_dir() and is_checkpoint(p))

    def save(
        self,
        step: int,
        generator: nn.Module,
        discriminator: nn.Module,
        config: dict[str, Any],
        train_state: Any | None,
        metric: float | None = None,
    ) -> Path:
        path = save_checkpoint(self.step_dir(step), generator, discriminator, config, train_state)
        copy_checkpoint(path, self.root / "latest")
        if metric is not None and self._is_better(metric):
            copy_checkpoint(path, self.root / "best")
        for old in self.step_dirs()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _is_better(self, metric: float) -> bool:
        best = self.root / "best"
        if not is_checkpoint(best):
            return True
        try:
            prev = read_config(best).get("training_metric", {}).get("value")
        except CheckpointError:
            return True
        return prev is None or metric < prev


def export_checkpoint(src: Path, dst: Path) -> Path:
    """Validate ``src`` and copy it to ``dst`` without its training state (servable)."""
    load_checkpoint(src)  # validate before publishing it
    return copy_checkpoint(src, dst, with_train_state=False)
