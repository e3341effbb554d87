"""The one way to make images and to score them: latents -> G -> uint8 pixels -> D -> logits.

``gan-sample``, ``gan-eval``, the training loop's sample grids and quick FID, the HTTP service
and the benchmarks all call these functions, so they agree image for image:

* :func:`latents` turns a request (per-image seeds, or explicit rows) into float32 latents with
  the seed contract of :mod:`gan.latents`: image ``i`` of seed ``S`` uses seed ``S + i``.
* :func:`class_labels` gives a conditional model's class per image: the requested ones, or,
  when none is requested, ``seed_i mod K`` for image seed ``seed_i`` (uniform over consecutive
  seeds and reproducible: a grid of K images from one seed shows every class once).
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

from gan.classmix import Classes
from gan.errors import UserError
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


class LabelError(UserError, ValueError):
    """A class label is unknown to the model, or given to an unconditional model."""


def resolve_label(label: int | str, classes: Sequence[str]) -> int:
    """A class index from an index or a class name; :class:`LabelError` names the valid ones."""
    if not classes:
        raise LabelError("this model is unconditional: it takes no class label")
    names = list(classes)
    if isinstance(label, str):
        if label in names:  # a name first: MNIST's class "7" is index 7 anyway
            return names.index(label)
        if label.isdigit() and int(label) < len(names):
            return int(label)
    elif not isinstance(label, bool) and 0 <= label < len(names):
        return label
    shown = ", ".join(f"{i}={name!r}" for i, name in enumerate(classes[:20]))
    more = f", ... ({len(classes)} classes)" if len(classes) > 20 else ""
    raise LabelError(f"unknown class {label!r}; give an index or a name: {shown}{more}")


def class_labels(
    seeds: Sequence[int], num_classes: int, requested: Sequence[int] | int | None = None
) -> torch.Tensor | None:
    """int64 ``[N]`` class per image for a conditional model (None for an unconditional one).

    ``requested``: one class for all images, one per image, or None for ``seed_i mod K``.
    """
    if num_classes <= 0:
        if requested is not None:
            raise LabelError("this model is unconditional: it takes no class label")
        return None
    if requested is None:
        return torch.tensor([s % num_classes for s in seeds], dtype=torch.int64)
    if isinstance(requested, int):
        return torch.full((len(seeds),), requested, dtype=torch.int64)
    if len(requested) != len(seeds):
        raise LabelError(f"{len(requested)} labels for {len(seeds)} images; give one or one each")
    return torch.tensor(list(requested), dtype=torch.int64)


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def generate(
    generator: nn.Module,
    z: torch.Tensor,
    labels: Classes | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """An eval-mode generator over latents ``[N, z_dim]`` (and classes ``[N]``, or a
    :class:`~gan.classmix.ClassMix` of two classes per row, for a conditional one) -> uint8
    ``[N, C, H, W]`` (CPU)."""
    device = _device_of(generator)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, int(z.shape[0]), chunk):
            rows = z[start : start + chunk].to(device, torch.float32)
            y = None if labels is None else labels[start : start + chunk].to(device)
            out.append(to_uint8(generator(rows) if y is None else generator(rows, y)).cpu())
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
    num_classes: int = 0,
    labels: Sequence[int] | int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``n`` images with the per-image seeds ``seed .. seed + n - 1``: uint8 ``[n, C, H, W]``.

    A conditional model (``num_classes`` > 0) draws the classes of :func:`class_labels`.
    """
    seeds = image_seeds(seed, n)
    z = latents(z_dim, seeds=seeds, truncation=truncation)
    return generate(generator, z, class_labels(seeds, num_classes, labels), chunk=chunk)


def score(
    discriminator: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    *,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """An eval-mode discriminator over uint8 ``[N, C, H, W]`` (and classes ``[N]`` for a
    conditional one) -> float32 logits ``[N]`` (CPU)."""
    device = _device_of(discriminator)
    out: list[torch.Tensor] = []
    with torch.inference_mode():
        for start in range(0, int(images.shape[0]), chunk):
            x = to_model_range(images[start : start + chunk].to(device))
            y = None if labels is None else labels[start : start + chunk].to(device)
            out.append((discriminator(x) if y is None else discriminator(x, y)).float().cpu())
    if not out:
        return torch.empty(0, dtype=torch.float32)
    return out[0] if len(out) == 1 else torch.cat(out)
