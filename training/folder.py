"""Image folders: every image under a folder (recursively), decoded with :mod:`gan.preprocess`
and cached.

:func:`load_folder` scans the folder, converts each image to the model's resolution and
channels (the conversion the HTTP service also applies to uploaded images) and labels the
images by first-level sub-folder when there are classes (:func:`folder_classes`). The decoded
tensor is cached as a safetensors file (never pickle) in :func:`default_cache_dir`, keyed by
:func:`folder_fingerprint` (the folder's file list, the target size and the preprocessing
version); the least recently used entries beyond :func:`cache_max_bytes` are pruned.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan import preprocess
from gan.io import atomic_write
from training.imagedata import DataError, DataWarning, ImageData, require_dir

#: File name endings (case-insensitive) that image folders are searched for. GIFs give their
#: first frame.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")

_CACHE_FORMAT = 1  # bump when the cache file layout changes
_SKIPPED_NAMES_SHOWN = 5


def scan_folder(directory: Path) -> tuple[list[str], int]:
    """Image files under ``directory`` as sorted POSIX relative paths, plus the count of other
    files. Hidden files and folders (name starting with ".", e.g. ``.gan-cache``) are skipped."""
    found: list[str] = []
    ignored = 0
    for root, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                found.append((Path(root) / name).relative_to(directory).as_posix())
            else:
                ignored += 1
    return sorted(found), ignored


def folder_fingerprint(
    directory: Path, files: Sequence[str], resolution: int, channels: int
) -> str:
    """SHA-256 over (relative path, size, mtime) of ``files`` and the conversion settings."""
    entries = []
    for rel in files:
        try:
            st = (directory / rel).stat()
            entries.append([rel, st.st_size, st.st_mtime_ns])
        except OSError:  # dangling link or vanished file: decoding will skip and report it
            entries.append([rel, -1, -1])
    key = {
        "cache_format": _CACHE_FORMAT,
        "preprocess_version": preprocess.PREPROCESS_VERSION,
        "max_pixels": preprocess.MAX_PIXELS,
        "resolution": resolution,
        "channels": channels,
        "files": entries,
    }
    return hashlib.sha256(json.dumps(key, separators=(",", ":")).encode()).hexdigest()


#: Most bytes the dataset cache keeps (``$GAN_DATA_CACHE_MAX_BYTES``); the least recently used
#: entries beyond it are deleted after each write.
DEFAULT_CACHE_MAX_BYTES = 4 * 1024**3


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gan-serve/datasets`` (default ``~/.cache/gan-serve/datasets``): decoded
    image folders are cached here, never inside the user's image folder."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gan-serve" / "datasets"


def cache_max_bytes() -> int:
    value = os.environ.get("GAN_DATA_CACHE_MAX_BYTES")
    if value is None:
        return DEFAULT_CACHE_MAX_BYTES
    try:
        return max(0, int(value))
    except ValueError as exc:
        raise DataError(f"GAN_DATA_CACHE_MAX_BYTES={value!r} is not a number of bytes") from exc


def prune_cache(root: Path, max_bytes: int, keep: Path) -> list[Path]:
    """Delete the least recently used cache entries in ``root`` until they use at most
    ``max_bytes`` (``keep``, the entry just used, always stays); returns what was deleted."""
    entries = []
    for path in root.glob("folder-*.safetensors"):
        try:
            st = path.stat()
        except OSError:
            continue
        entries.append((st.st_mtime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed: list[Path] = []
    for _, size, path in sorted(entries):  # oldest first
        if total <= max_bytes:
            break
        if path == keep:
            continue
        path.unlink(missing_ok=True)
        total -= size
        removed.append(path)
    return removed


def _read_cache(
    path: Path, fingerprint: str, shape: tuple[int, int, int]
) -> tuple[np.ndarray, dict[str, Any]] | None:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            images = fh.get_tensor("images")
        extra = json.loads(meta.get("info", "{}"))
    except (OSError, ValueError, KeyError, SafetensorError):
        return None  # unreadable or foreign file: rebuild it
    if (
        meta.get("fingerprint") != fingerprint
        or images.dtype != np.uint8
        or images.ndim != 4
        or tuple(images.shape[1:]) != shape
        or not isinstance(extra, dict)
        or not all(
            isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s)
            for s in extra.get("skipped", [])
        )
    ):
        return None
    return images, extra


def _write_cache(path: Path, images: np.ndarray, fingerprint: str, extra: dict[str, Any]) -> bool:
    from safetensors.numpy import save_file

    def write(tmp: Path) -> None:
        save_file(
            {"images": np.ascontiguousarray(images)},
            str(tmp),
            metadata={"fingerprint": fingerprint, "info": json.dumps(extra)},
        )

    try:
        atomic_write(path, write)
    except OSError as exc:
        warnings.warn(f"could not write the dataset cache {path}: {exc}", DataWarning, stacklevel=3)
        return False
    return True


def _decode_files(
    directory: Path, files: Sequence[str], resolution: int, channels: int, progress: bool
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    from tqdm import tqdm

    arrays: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []
    bar: Iterator[str] = tqdm(
        files, desc=f"decoding {directory.name or directory}", unit="img", disable=not progress
    )
    for rel in bar:
        # Pillow's own warnings on a file (a truncated or odd image it still decodes) are
        # collected and reported once per file, naming it, instead of as Python warnings.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with preprocess.open_image(directory / rel) as img:
                    arrays.append(preprocess.to_model_pixels(img, resolution, channels))
            except Exception as exc:  # never crash on one bad file; reported in one warning
                why = str(exc) if isinstance(exc, preprocess.ImageDecodeError) else repr(exc)
                skipped.append((rel, why))
        _warn_decoded_with_warnings(directory / rel, caught)
    if arrays:
        return np.stack(arrays), skipped
    return np.zeros((0, channels, resolution, resolution), np.uint8), skipped


def _warn_decoded_with_warnings(path: Path, caught: Sequence[warnings.WarningMessage]) -> None:
    """One DataWarning for a file whose decoding raised warnings (their messages, joined)."""
    messages = list(dict.fromkeys(" ".join(str(w.message).split()) for w in caught))
    if messages:
        warnings.warn(f"{path}: decoding warned: {'; '.join(messages)}", DataWarning, stacklevel=3)


def _warn_skipped(directory: Path, skipped: Sequence[Any], total: int) -> None:
    if not skipped:
        return
    shown = ", ".join(f"{rel} ({why})" for rel, why in skipped[:_SKIPPED_NAMES_SHOWN])
    more = len(skipped) - _SKIPPED_NAMES_SHOWN
    tail = f" and {more} more" if more > 0 else ""
    warnings.warn(
        f"{directory}: skipped {len(skipped)} of {total} image files that could not be decoded "
        f"or were too large: {shown}{tail}",
        DataWarning,
        stacklevel=3,
    )


def load_folder(
    data_dir: str | os.PathLike[str],
    *,
    resolution: int,
    channels: int,
    cache_dir: Path | None = None,
    limit: int | None = None,
    progress: bool = True,
) -> ImageData:
    """Every image under ``data_dir`` (recursively), converted with ``to_model_pixels``.

    See :func:`load_dataset`; files are taken in sorted relative-path order and ``limit`` keeps
    the first ``limit`` image files.
    """
    directory = Path(data_dir)
    require_dir(directory, "image folder", "pass --data-dir pointing at a folder of images")
    files, ignored = scan_folder(directory)
    if not files:
        raise DataError(
            f"no images found in {directory} (searched recursively, hidden files skipped); "
            f"accepted extensions: {', '.join(IMAGE_EXTENSIONS)}"
            + (f"; {ignored} other file(s) were ignored" if ignored else "")
        )
    if limit is not None:
        files = files[:limit]
    fingerprint = folder_fingerprint(directory, files, resolution, channels)
    cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_path = cache_root / f"folder-{fingerprint[:40]}.safetensors"
    cached = _read_cache(cache_path, fingerprint, (channels, resolution, resolution))
    if cached is not None:
        images, extra = cached
        skipped = [tuple(s) for s in extra.get("skipped", [])]
        cache_hit = True
    else:
        images, skipped = _decode_files(directory, files, resolution, channels, progress)
        cache_hit = False
    _warn_skipped(directory, skipped, len(files))
    if len(images) == 0:
        raise DataError(
            f"none of the {len(files)} image files in {directory} could be decoded; check that "
            "they are valid PNG, JPEG, WebP, BMP or GIF images"
        )
    cache_file: Path | None = cache_path
    if cache_hit:
        with contextlib.suppress(OSError):
            os.utime(cache_path)  # most recently used: pruned last
    elif _write_cache(cache_path, images, fingerprint, {"skipped": [list(s) for s in skipped]}):
        prune_cache(cache_root, cache_max_bytes(), keep=cache_path)
    else:
        cache_file = None
    if not images.flags.writeable:
        images = images.copy()
    classes, labels = folder_classes(files, {rel for rel, _ in skipped})
    info: dict[str, Any] = {
        "name": "folder",
        "path": str(directory.resolve()),
        "split": "train",
        "num_images": int(images.shape[0]),
        "num_files": len(files),
        "num_skipped": len(skipped),
        "skipped": [rel for rel, _ in skipped[:20]],
        "num_ignored_files": ignored,
        "limit": limit,
        "fingerprint": fingerprint,
        "resolution": resolution,
        "channels": channels,
        "preprocess": preprocess.preprocess_description(resolution, channels),
        "cache": str(cache_file) if cache_file is not None else None,
        "cache_hit": cache_hit,
        "classes": classes,
    }
    return ImageData(torch.from_numpy(images), labels, info, classes)


def folder_classes(
    files: Sequence[str], skipped: set[str]
) -> tuple[list[str], torch.Tensor | None]:
    """Class names and per-image labels from first-level sub-folders (the ImageFolder
    convention: ``cats/a.png``, ``dogs/b.png``), for a folder whose every image sits in one of
    at least two sub-folders; else ``([], None)``. Skipped files get no label."""
    kept = [rel for rel in files if rel not in skipped]
    parts = [Path(rel).parts for rel in kept]
    if not parts or any(len(p) < 2 for p in parts):
        return [], None
    classes = sorted({p[0] for p in parts})
    if len(classes) < 2:
        return [], None
    index = {name: i for i, name in enumerate(classes)}
    return classes, torch.tensor([index[p[0]] for p in parts], dtype=torch.int64)
