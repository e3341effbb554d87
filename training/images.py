"""Image grids and PNG/NPY writing for uint8 image batches (no model code)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch


def make_grid(images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 2) -> np.ndarray:
    """uint8 [N, C, H, W] -> one uint8 image [H', W'] (C=1) or [H', W', 3], padded in black."""
    arr = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] images, got shape {arr.shape}")
    n, c, h, w = arr.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    ncol = max(1, math.ceil(n / nrow))
    grid = np.zeros((c, pad + ncol * (h + pad), pad + nrow * (w + pad)), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, y : y + h, x : x + w] = arr[i]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def to_hwc(images: torch.Tensor) -> np.ndarray:
    """uint8 [N, C, H, W] -> [N, H, W] (grayscale) or [N, H, W, C]."""
    arr = images.numpy()
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_png(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    def write(tmp: Path) -> None:
        Image.fromarray(array).save(tmp, format="PNG")

    _atomic_write(Path(path), write)


def save_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> None:
    save_png(make_grid(images, nrow=nrow), Path(path))


def save_images(images: torch.Tensor, out: Path) -> Path:
    """Write uint8 [N, C, H, W] by ``out``'s form: ``.npy`` array, ``.png`` grid, else a folder."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npy":

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, to_hwc(images), allow_pickle=False)

        _atomic_write(out, write)
    elif suffix == ".png":
        save_grid(images, out)
    elif suffix == "":
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(to_hwc(images)):
            save_png(img, out / f"{i:05d}.png")
    else:
        raise ValueError(f"unsupported output {out}: use a .npy file, a .png file, or a folder")
    return out
