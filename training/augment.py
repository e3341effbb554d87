"""DiffAugment (Zhao et al. 2020): differentiable augmentation of real AND fake images before D.

With a few hundred to a few thousand training images D memorises the reals and training
collapses; augmenting both what D sees of the data and of G's samples (with the same random
operations, differentiably, so G's gradient passes through) keeps D from overfitting without
teaching G to make augmented images. Off by default (``gan-train --augment``).

Policies, applied in this order to images in [-1, 1] ``[B, C, H, W]``:

* ``color``: brightness (add U(-0.5, 0.5)), saturation (scale the deviation from the per-pixel
  channel mean by U(0, 2)), contrast (scale the deviation from the image mean by U(0.5, 1.5));
* ``translation``: shift by up to 1/8 of the size in x and y, filling with -1 (black);
* ``cutout``: set a random square of half the size to 0 (mid-gray).

Randomness comes from a ``torch.Generator`` the trainer owns and saves, so runs stay
reproducible and resumable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


def _u(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, 1, 1, 1, generator=gen) * (high - low) + low).to(device)


def color(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, dev = x.shape[0], x.device
    x = x + _u(n, -0.5, 0.5, gen, dev)  # brightness
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _u(n, 0.0, 2.0, gen, dev) + mean  # saturation (no-op for gray)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _u(n, 0.5, 1.5, gen, dev) + mean  # contrast


def translation(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    sy, sx = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    ty = torch.randint(-sy, sy + 1, (n,), generator=gen).tolist()
    tx = torch.randint(-sx, sx + 1, (n,), generator=gen).tolist()
    padded = F.pad(x, (sx, sx, sy, sy), value=-1.0)  # [B, C, H + 2sy, W + 2sx]
    rows = [
        padded[i, :, sy - ty[i] : sy - ty[i] + h, sx - tx[i] : sx - tx[i] + w] for i in range(n)
    ]
    return torch.stack(rows)


def cutout(x: torch.Tensor, gen: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + 1 - ch % 2, (n,), generator=gen)
    cx = torch.randint(0, w + 1 - cw % 2, (n,), generator=gen)
    ys = torch.arange(h)[None, :, None]
    xs = torch.arange(w)[None, None, :]
    inside = ((ys - cy[:, None, None]).abs() < ch / 2) & ((xs - cx[:, None, None]).abs() < cw / 2)
    return x * (~inside).to(x.dtype).to(x.device)[:, None]  # cut squares go to 0 (mid-gray)


_OPS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    x: torch.Tensor, gen: torch.Generator, policies: tuple[str, ...] = POLICIES
) -> torch.Tensor:
    """Apply the policies to a batch; differentiable with respect to ``x``."""
    for name in policies:
        x = _OPS[name](x, gen)
    return x
