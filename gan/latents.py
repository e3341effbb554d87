"""Seeds -> latent vectors, truncation and interpolation (pure functions, CPU, no model).

Reproducibility contract (documented in docs/api.md):

* Image ``i`` of a request with seed ``S`` uses the image seed ``seed_i = (S + i) mod 2**53``,
  so ``seed_i`` with ``n = 1`` reproduces it alone.
* The latent of an image seed is drawn from its own ``torch.Generator`` seeded with it, on the
  CPU, so it never depends on the device, on the other images of the request or on how requests
  are batched together.
* Truncation ``t`` (mode "resample"): every latent component with ``|z_j| > t`` is redrawn from
  the same generator until all lie within ``[-t, t]`` (the truncation trick of BigGAN); the first
  draw is the untruncated latent, so components already inside the bound keep their values.
* Interpolation uses spherical linear interpolation (slerp) between the two seed latents.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

#: Seeds are integers in [0, SEED_LIMIT): 2**53 keeps them exact as JSON numbers in JavaScript.
SEED_LIMIT = 2**53
TRUNCATION_MODE = "resample"
TRUNCATION_MIN = 0.05
TRUNCATION_MAX = 10.0
# With t >= 0.05 a component is accepted with probability >= 0.04 per draw; this bound on redraw
# rounds is never reached in practice (it would take ~10^17 years of luck), and clamping after it
# keeps the function total and deterministic.
_MAX_REDRAW_ROUNDS = 10_000


def random_seed() -> int:
    """A fresh seed for requests that gave none (short enough to type back: below 2**32)."""
    return secrets.randbelow(2**32)


def image_seeds(seed: int, n: int) -> list[int]:
    """Per-image seeds of a request with seed ``seed`` and ``n`` images."""
    return [(seed + i) % SEED_LIMIT for i in range(n)]


def seed_latent(seed: int, z_dim: int, truncation: float | None = None) -> torch.Tensor:
    """The latent vector float32 ``[z_dim]`` of one image seed (see the module docstring)."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    z = torch.randn(z_dim, generator=gen, dtype=torch.float32)
    if truncation is not None:
        for _ in range(_MAX_REDRAW_ROUNDS):
            outside = z.abs() > truncation
            count = int(outside.sum())
            if count == 0:
                break
            z[outside] = torch.randn(count, generator=gen, dtype=torch.float32)
        z.clamp_(-truncation, truncation)
    return z


def latents_for_seeds(
    seeds: list[int], z_dim: int, truncation: float | None = None
) -> torch.Tensor:
    """float32 ``[len(seeds), z_dim]``, one :func:`seed_latent` per seed."""
    import torch

    return torch.stack([seed_latent(s, z_dim, truncation) for s in seeds])


def interpolation_weights(steps: int) -> list[float]:
    """``steps`` evenly spaced positions from 0 (the start latent) to 1 (the end latent)."""
    if steps < 2:
        raise ValueError(f"interpolation needs at least 2 steps, got {steps}")
    return [i / (steps - 1) for i in range(steps)]


def slerp(z0: torch.Tensor, z1: torch.Tensor, weights: list[float]) -> torch.Tensor:
    """Spherical interpolation, float32 ``[len(weights), z_dim]``, between ``z0`` and ``z1``.

    ``slerp(t) = sin((1 - t) W) / sin(W) * z0 + sin(t W) / sin(W) * z1`` with ``W`` the angle
    between ``z0`` and ``z1`` (White, "Sampling Generative Networks", 2016); it stays in the
    shell where Gaussian latents live, unlike a straight line. Falls back to linear interpolation
    when the two are (anti)parallel within float precision. Rows for t = 0 and t = 1 are exactly
    ``z0`` and ``z1``, so the path's ends reproduce the two seed images.
    """
    import torch

    a, b = z0.double(), z1.double()
    t = torch.tensor(weights, dtype=torch.float64)[:, None]  # [S, 1]
    na, nb = float(a.norm()), float(b.norm())
    so = 0.0
    if na > 0.0 and nb > 0.0:
        omega = torch.arccos(torch.clamp(torch.dot(a, b) / (na * nb), -1.0, 1.0))
        so = float(torch.sin(omega))
    if so < 1e-6:
        out = (1 - t) * a + t * b
    else:
        out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / so
    out = out.float()
    for row, w in enumerate(weights):
        if w == 0.0:
            out[row] = z0
        elif w == 1.0:
            out[row] = z1
    return out
