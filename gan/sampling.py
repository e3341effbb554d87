"""The one way to make images and to score them: latents -> G -> uint8 pixels -> D -> logits.

``gan-sample``, ``gan-eval``, the training loop's sample grids and quick FID, the HTTP service
and the benchmarks all call these functions, so they agree image for image:

* :func:`latents` turns a request (per-image seeds, or explicit rows) into float32 latents with
  the seed contract of :mod:`gan.latents`: image ``i`` of seed ``S`` uses seed ``S + i``.
* :func:`generate` runs an eval-mode generator over latents in chunks and returns uint8 pixels
  on the CPU; a row's image never depends on the other rows (BatchNorm in eval mode).
* :func:`sample` is the two together: ``sample(g, seed=S, n=N)`` gives exactly the images that
  ``gan-sample --seed S --num N`` writes and that ``POST /generate {"seed": S, "n": N}`` returns.
* :func:`score` runs D over uint8 model pixels in chunks and returns float32 logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gan.latents import image_seeds, latents_for_seeds
from gan.models import to_model_range, to_uint8

#: Rows per forward pass when a caller gives no chunk size: large enough to amortise per-call
#: overhead, small enough to keep activations in cache on a CPU.
DEFAULT_CHUNK = 500


def latents(
    z_dim: int,
    *,
    seeds: Sequence[int] | None = None,
    seed: int | None = None,
    n: int | None = None,
    truncation: float | None = None,
) -> torch.Tensor:
    """float32 ``[N, z_dim]`` from explicit per-image ``seeds`` or from ``seed`` and ``n``."""
    if seeds is None:
        if seed is None or n is None:
            raise ValueError("give seeds, or seed and n")
        seeds = image_seeds(seed, n)
    return latents_for_seeds(list(seeds), z_dim, truncation)


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def generate(generator: nn.Module, z: torch.Tensor, *, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """An eval-mode generator over latents ``[N, z_dim]`` -> uint8 ``[N, C, H, W]`` (CPU)."""
    device = _device_of(generator)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, int(z.shape[0]), chunk):
            rows = z[start : start + chunk].to(device, torch.float32)
            out.append(to_uint8(generator(rows)).cpu())
    if not out:
        return torch.empty(0, dtype=torch.uint8)
    return out[0] if len(out) == 1 else torch.cat(out)


def sample(
    generator: nn.Module,
    z_dim: int,
    *,
    seed: int,
    n: int,
    truncation: float | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``n`` images with the per-image seeds ``seed .. seed + n - 1``: uint8 ``[n, C, H, W]``."""
    z = latents(z_dim, seed=seed, n=n, truncation=truncation)
    return generate(generator, z, chunk=chunk)


def score(discriminator: nn.Module, images: torch.Tensor, *, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """An eval-mode discriminator over uint8 ``[N, C, H, W]`` -> float32 logits ``[N]`` (CPU)."""
    device = _device_of(discriminator)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, int(images.shape[0]), chunk):
            x = to_model_range(images[start : start + chunk].to(device))
            out.append(discriminator(x).float().cpu())
    if not out:
        return torch.empty(0, dtype=torch.float32)
    return out[0] if len(out) == 1 else torch.cat(out)
