"""Datasets as in-memory uint8 tensors.

Every loader returns an :class:`ImageData`: ``images`` uint8 ``[N, C, H, W]`` plus optional
integer ``labels`` ``[N]``. Training converts to ``[-1, 1]`` floats per batch
(:func:`gan.models.to_model_range`).

:func:`load_dataset` is the entry point for training: ``"mnist"`` (the four IDX files, gzipped or
raw, optionally downloaded with :func:`download_mnist`; :mod:`training.mnist`) or ``"folder"``
(any folder of images, searched recursively; :mod:`training.folder`). Both are converted to the
model's resolution and channels with :mod:`gan.preprocess`, the conversion the HTTP service also
applies to uploaded images. Decoded image folders are cached as a safetensors file (never
pickle), keyed by a fingerprint of the folder's file list, the target size and the
preprocessing version. :func:`load_training_data` adds the held-out real images
(:func:`split_heldout`).

The loaders' names stay importable from here (``from training.data import load_mnist``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gan import preprocess
from training.folder import DEFAULT_CACHE_MAX_BYTES as DEFAULT_CACHE_MAX_BYTES
from training.folder import IMAGE_EXTENSIONS as IMAGE_EXTENSIONS
from training.folder import cache_max_bytes as cache_max_bytes
from training.folder import default_cache_dir as default_cache_dir
from training.folder import folder_classes as folder_classes
from training.folder import folder_fingerprint as folder_fingerprint
from training.folder import load_folder as load_folder
from training.folder import prune_cache as prune_cache
from training.imagedata import DataError as DataError
from training.imagedata import DataWarning as DataWarning
from training.imagedata import ImageData as ImageData
from training.mnist import DEFAULT_MIRRORS as DEFAULT_MIRRORS
from training.mnist import MNIST_CLASSES as MNIST_CLASSES
from training.mnist import MNIST_FILES as MNIST_FILES
from training.mnist import MNIST_SHA256 as MNIST_SHA256
from training.mnist import check_mnist_split, mnist_files_present
from training.mnist import default_mnist_dir as default_mnist_dir
from training.mnist import download_mnist as download_mnist
from training.mnist import load_mnist as load_mnist
from training.mnist import parse_idx as parse_idx

DATASETS = ("mnist", "folder")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    data_dir: str | Path | None,
    *,
    resolution: int,
    channels: int,
    split: str = "train",
    download: bool = False,
    cache_dir: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> ImageData:
    """Load a dataset as uint8 ``[N, channels, resolution, resolution]`` for training.

    * ``"mnist"``: the IDX files in ``data_dir`` (default :func:`default_mnist_dir`), split
      ``"train"`` (60,000) or ``"test"`` (10,000), with labels; ``download=True`` fetches
      missing files with :func:`download_mnist`. Converted with
      :func:`gan.preprocess.batch_to_model_pixels` (identical to ``to_model_pixels``).
    * ``"folder"``: every PNG/JPEG/WebP/BMP/GIF under ``data_dir`` (recursively), labels None,
      split ``"train"`` only (the whole folder). Undecodable or oversized images are skipped
      and reported in one :class:`DataWarning`. The decoded tensor is cached in ``cache_dir``
      (default :func:`default_cache_dir`, never the image folder itself; at most
      ``$GAN_DATA_CACHE_MAX_BYTES``, least recently used entries go first) and reused until a
      file is added, removed or changed.

    ``limit`` keeps the first ``limit`` images (MNIST) or image files (folder, sorted by path).
    ``info`` describes the data for the checkpoint's config.json.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; use one of {', '.join(DATASETS)}")
    try:
        preprocess_info = preprocess.preprocess_description(resolution, channels)
    except ValueError as exc:
        raise DataError(str(exc)) from exc
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(f"limit must be a positive integer or None, got {limit!r}")
    if name == "folder":
        if split != "train":
            raise DataError(
                f"image folders have no {split!r} split; use split='train' (the whole folder)"
            )
        if data_dir is None:
            raise DataError("the 'folder' dataset needs a data directory; pass --data-dir")
        return load_folder(
            data_dir,
            resolution=resolution,
            channels=channels,
            cache_dir=cache_dir,
            limit=limit,
            progress=progress,
        )

    check_mnist_split(split)
    directory = Path(data_dir) if data_dir is not None else default_mnist_dir()
    if download and not (directory.is_dir() and mnist_files_present(directory, split)):
        download_mnist(directory, mirrors=DEFAULT_MIRRORS, progress=progress)
    raw = load_mnist(directory, split)
    source_count = len(raw)
    images = raw.images.numpy()
    labels = raw.labels
    if limit is not None:
        images = images[:limit]
        labels = labels[:limit] if labels is not None else None
    converted = preprocess.batch_to_model_pixels(images, resolution, channels)
    info: dict[str, Any] = {
        "name": "mnist",
        "classes": MNIST_CLASSES,
        "path": str(directory.resolve()),
        "split": split,
        "num_images": int(converted.shape[0]),
        "source_num_images": source_count,
        "source_resolution": int(images.shape[-1]),
        "limit": limit,
        "resolution": resolution,
        "channels": channels,
        "preprocess": preprocess_info,
    }
    return ImageData(torch.from_numpy(converted), labels, info, list(MNIST_CLASSES))


# --------------------------------------------------------------------------------------------
# Training data plus held-out real images
# --------------------------------------------------------------------------------------------

#: Share of a folder dataset kept out of training (at most HELDOUT_MAX images) to record D's
#: scores on real images it never saw (the service's realness percentile).
HELDOUT_FRACTION = 0.05
HELDOUT_MAX = 2000


def split_heldout(data: ImageData, fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Deterministically keep ``fraction`` of a dataset (at most 2000 images) out of training."""
    n = len(data)
    k = min(HELDOUT_MAX, max(1, round(n * fraction))) if n > 1 and fraction > 0 else 0
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    held, keep = perm[:k], perm[k:].sort().values

    def part(idx: torch.Tensor, info: dict[str, Any]) -> ImageData:
        labels = data.labels[idx] if data.labels is not None else None
        return ImageData(data.images[idx], labels, info, list(data.classes))

    if k == 0:
        return data, part(held, {"name": "held-out"})
    info = {**data.info, "num_images": len(keep), "heldout_images": int(k)}
    return part(keep, info), part(held, {"name": "held-out"})


def load_training_data(
    kind: str,
    data_dir: Path | None,
    resolution: int,
    channels: int,
    *,
    download: bool = False,
    cache_dir: Path | None = None,
    limit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ImageData, ImageData]:
    """(training data, held-out real images): MNIST's test set, or a seeded share of a folder."""
    data = load_dataset(
        kind,
        data_dir,
        resolution=resolution,
        channels=channels,
        split="train",
        download=download,
        cache_dir=cache_dir,
        limit=limit,
        progress=progress,
    )
    if kind == "mnist":
        test = load_dataset(
            "mnist",
            data_dir,
            resolution=resolution,
            channels=channels,
            split="test",
            progress=progress,
        )
        data.info["heldout_source"] = "MNIST test set (10,000 images, never trained on)"
        return data, test
    data, held = split_heldout(data, HELDOUT_FRACTION, seed)
    data.info["heldout_source"] = f"{len(held)} images held out of the folder (seeded split)"
    return data, held


def reload_run_folder(
    config: Any,
    checkpoint: str | os.PathLike[str],
    data_dir: Path,
    *,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> tuple[ImageData, ImageData]:
    """A folder run's (training images, held-out images), read again as its training read
    them (the checkpoint config's resolution, channels, ``--limit`` and seed: the same seeded
    held-out split); :class:`TrainingError` when ``data_dir`` holds other images (their
    fingerprint differs from the one ``config`` records), whose held-out share would then
    hold training images."""
    from training.config import TrainingError

    recorded = config.dataset
    limit = recorded.get("limit") if isinstance(recorded.get("limit"), int) else None
    seed = config.seed if config.seed is not None else int(config.training.get("seed", 0))
    mc = config.model
    data, held = load_training_data(
        "folder",
        data_dir,
        mc.resolution,
        mc.channels,
        cache_dir=cache_dir,
        limit=limit,
        seed=seed,
        progress=progress,
    )
    want = recorded.get("fingerprint")
    if want and data.info.get("fingerprint") != want:
        raise TrainingError(
            f"the images in {data_dir} are not the ones {checkpoint} was trained on (their "
            "fingerprint differs), so its held-out share would hold training images; point "
            "--data-dir at the original folder"
        )
    return data, held
