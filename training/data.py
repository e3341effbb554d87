"""Datasets as in-memory uint8 tensors.

Every loader returns an :class:`ImageData`: ``images`` uint8 ``[N, C, H, W]`` plus optional
integer ``labels`` ``[N]``. Training converts to ``[-1, 1]`` floats per batch
(:func:`training.models.to_model_range`).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


class DataError(Exception):
    """A dataset cannot be read; the message says what to fix."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor | None  # int64 [N] or None
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])


MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def default_mnist_dir() -> Path:
    """``$GAN_DATA_DIR`` if set, else ``../shared/data/mnist`` beside the project root."""
    env = os.environ.get("GAN_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def _open_idx(directory: Path, stem: str) -> bytes:
    for name in (stem + ".gz", stem):
        p = directory / name
        if p.is_file():
            if name.endswith(".gz"):
                with gzip.open(p, "rb") as fh:
                    return fh.read()
            return p.read_bytes()
    raise DataError(
        f"{directory}: neither {stem}.gz nor {stem} found; point --data-dir at the folder with "
        "the four MNIST IDX files, or pass --download"
    )


def parse_idx(raw: bytes, name: str, expected_ndim: int) -> np.ndarray:
    """Parse an IDX file holding unsigned bytes (MNIST's images or labels)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{name}: not an IDX file (bad magic number)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{name}: IDX element type 0x{dtype_code:02x} unsupported (expected 0x08, ubyte)")
    if ndim != expected_ndim:
        raise DataError(f"{name}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise DataError(
            f"{name}: IDX header announces {count} bytes of data for shape {dims}, file holds "
            f"{len(raw) - header}; the file is truncated or corrupted"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_mnist(data_dir: str | os.PathLike[str] | None = None, split: str = "train") -> ImageData:
    """Load MNIST ``split`` ("train" or "test") from a folder of IDX files, gzipped or raw."""
    if split not in MNIST_FILES:
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    directory = Path(data_dir) if data_dir is not None else default_mnist_dir()
    if not directory.is_dir():
        raise DataError(
            f"MNIST directory {directory} does not exist; pass --data-dir, set GAN_DATA_DIR, "
            "or use --download"
        )
    img_stem, lbl_stem = MNIST_FILES[split]
    images = parse_idx(_open_idx(directory, img_stem), img_stem, 3)
    labels = parse_idx(_open_idx(directory, lbl_stem), lbl_stem, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} split"
        )
    tensor = torch.from_numpy(images.copy()).unsqueeze(1)  # [N, 1, 28, 28]
    return ImageData(
        tensor,
        torch.from_numpy(labels.astype(np.int64)),
        {"name": "mnist", "split": split, "path": str(directory), "num_images": int(images.shape[0])},
    )
