"""Memorisation: are generated images closer to the training images than new real images are?

For each generated image, the distance to its nearest training image; for each held-out real
image (never trained on), the same. A model that copies its training set puts its samples far
closer to it than held-out images are: the ratio of the two medians is then well below 1 (about
0 for exact copies); a model that generalises has a ratio near 1 or above. Distances are L2, in
pixels ([0, 1] per value) and, when given, in a feature space (the evaluator's classifier
features, or :mod:`training.metrics.anyfeatures` for any folder), computed in chunks with
``torch.cdist``. :func:`closest_pairs_grid` shows the closest pairs (generated | nearest
training image).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from gan.io import save_grid

#: Pairs shown in the closest-pairs PNG.
PAIRS_SHOWN = 16


def nearest(
    queries: torch.Tensor, pool: torch.Tensor, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each row of ``queries`` [N, D], the L2 distance to its nearest row of ``pool``
    [M, D] and that row's index: chunked over both, never an N x M matrix in memory."""
    q, p = queries.float(), pool.float()
    best = torch.full((len(q),), float("inf"))
    index = torch.zeros(len(q), dtype=torch.long)
    for i in range(0, len(q), chunk):
        qi = q[i : i + chunk]
        for j in range(0, len(p), 8 * chunk):
            d = torch.cdist(qi, p[j : j + 8 * chunk])
            dmin, arg = d.min(dim=1)
            better = dmin < best[i : i + chunk]
            best[i : i + chunk] = torch.where(better, dmin, best[i : i + chunk])
            index[i : i + chunk] = torch.where(better, arg + j, index[i : i + chunk])
    return best, index


def _pixels(images: torch.Tensor) -> torch.Tensor:
    return images.reshape(len(images), -1).float() / 255.0


def _space(gen: torch.Tensor, held: torch.Tensor) -> dict[str, Any]:
    gen_med, held_med = float(gen.median()), float(held.median())
    return {
        "generated_median": gen_med,
        "heldout_median": held_med,
        "ratio": gen_med / held_med if held_med > 0 else float("nan"),
    }


@torch.no_grad()
def memorisation(
    generated: torch.Tensor,
    train: torch.Tensor,
    heldout: torch.Tensor,
    features: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[dict[str, Any], torch.Tensor]:
    """The memorisation record of uint8 ``generated`` [N, C, H, W] against the ``train``
    images, with ``heldout`` real images as the reference; and the indices into ``train`` of
    each generated image's nearest one in pixels (for :func:`closest_pairs_grid`).

    ``features`` adds feature spaces, by name: (features of the generated images, of a pool of
    training images, of the held-out images); the pool may be a subset of ``train`` (both
    sides are measured against the same pool)."""
    if generated.shape[1:] != train.shape[1:] or heldout.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"images differ in shape: generated {tuple(generated.shape[1:])}, training "
            f"{tuple(train.shape[1:])}, held-out {tuple(heldout.shape[1:])}"
        )
    train_px = _pixels(train)
    gen_d, gen_idx = nearest(_pixels(generated), train_px)
    held_d, _ = nearest(_pixels(heldout), train_px)
    record: dict[str, Any] = {
        "num_generated": len(generated),
        "num_heldout": len(heldout),
        "num_train": len(train),
        "pixels": _space(gen_d, held_d),
    }
    for name, (gen_f, pool_f, held_f) in (features or {}).items():
        gen_fd, _ = nearest(gen_f, pool_f)
        held_fd, _ = nearest(held_f, pool_f)
        record[name] = {**_space(gen_fd, held_fd), "num_train": len(pool_f)}
    return record, gen_idx


def closest_pairs_grid(
    generated: torch.Tensor,
    train: torch.Tensor,
    nearest_index: torch.Tensor,
    path: str | os.PathLike[str],
    pairs: int = PAIRS_SHOWN,
) -> Path:
    """A PNG of the ``pairs`` generated images closest to a training image, each beside that
    image (generated | nearest training image), four pairs a row."""
    distances = (_pixels(generated) - _pixels(train[nearest_index])).norm(dim=1)
    order = distances.argsort()[:pairs]
    tiles = torch.stack([generated[order], train[nearest_index[order]]], dim=1)
    return save_grid(tiles.reshape(-1, *generated.shape[1:]), path, nrow=8)
