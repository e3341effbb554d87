"""Datasets as in-memory uint8 tensors.

Every loader returns an :class:`ImageData`: ``images`` uint8 ``[N, C, H, W]`` plus optional
integer ``labels`` ``[N]``. Training converts to ``[-1, 1]`` floats per batch
(:func:`gan.models.to_model_range`).

:func:`load_dataset` is the entry point for training: ``"mnist"`` (the four IDX files, gzipped or
raw, optionally downloaded with :func:`download_mnist`) or ``"folder"`` (any folder of images,
searched recursively). Both are converted to the model's resolution and channels with
:mod:`gan.preprocess`, the conversion the HTTP service also applies to uploaded images.
Decoded image folders are cached as a safetensors file (never pickle), keyed by a fingerprint of
the folder's file list, the target size and the preprocessing version.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import urllib.request
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import torch

from gan import preprocess
from gan.errors import UserError
from gan.io import atomic_write, sha256_stream


class DataError(UserError):
    """A dataset cannot be read; the message says what to fix."""


class DataWarning(UserWarning):
    """Some input was skipped (e.g. undecodable images in a folder); the data is still usable."""


@dataclass
class ImageData:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor | None  # int64 [N] class indices, or None
    info: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)  # class names (index = label), if labelled

    def __len__(self) -> int:
        return int(self.images.shape[0])


DATASETS = ("mnist", "folder")
MNIST_CLASSES = [str(d) for d in range(10)]

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# SHA-256 of the DECOMPRESSED IDX files: identical from every mirror (the gzip bytes differ).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

DEFAULT_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: File name endings (case-insensitive) that image folders are searched for. GIFs give their
#: first frame.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".webp")

_CACHE_FORMAT = 1  # bump when the cache file layout changes
_SKIPPED_NAMES_SHOWN = 5


def default_mnist_dir() -> Path:
    """``$GAN_DATA_DIR`` if set, else ``../shared/data/mnist`` beside the project root."""
    env = os.environ.get("GAN_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


def _require_dir(directory: Path, what: str, fix: str) -> None:
    if not directory.exists():
        raise DataError(f"{what} {directory} does not exist; {fix}")
    if not directory.is_dir():
        raise DataError(f"{what} {directory} is not a directory; {fix}")


# --------------------------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------------------------


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_gzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path}: not a valid gzip file ({exc}); the download is probably incomplete: delete "
            "it and fetch it again (e.g. --download)"
        ) from exc


def _open_idx(directory: Path, stem: str) -> bytes:
    path = _find_idx(directory, stem)
    if path is None:
        raise DataError(
            f"{directory}: neither {stem}.gz nor {stem} found; point --data-dir at the folder with "
            "the four MNIST IDX files, or pass --download"
        )
    return _read_gzip(path) if path.suffix == ".gz" else path.read_bytes()


def parse_idx(raw: bytes, name: str, expected_ndim: int) -> np.ndarray:
    """Parse an IDX file holding unsigned bytes (MNIST's images or labels)."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{name}: not an IDX file (bad magic number); expected the original MNIST IDX files "
            "(gzipped or raw)"
        )
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(
            f"{name}: IDX element type 0x{dtype_code:02x} unsupported (expected 0x08, ubyte)"
        )
    if ndim != expected_ndim:
        raise DataError(f"{name}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{name}: truncated IDX header; the file is truncated, fetch it again")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims))
    if len(raw) - header != count:
        raise DataError(
            f"{name}: IDX header announces {count} bytes of data for shape {dims}, file holds "
            f"{len(raw) - header}; the file is truncated or corrupted, fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _check_mnist_split(split: str) -> None:
    if split not in MNIST_FILES:
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'")


def load_mnist(data_dir: str | os.PathLike[str] | None = None, split: str = "train") -> ImageData:
    """Load MNIST ``split`` ("train" or "test") from a folder of IDX files, gzipped or raw.

    Images are returned as stored: uint8 ``[N, 1, 28, 28]``; see :func:`load_dataset` for other
    resolutions and channel counts.
    """
    _check_mnist_split(split)
    directory = Path(data_dir) if data_dir is not None else default_mnist_dir()
    _require_dir(
        directory, "MNIST directory", "pass --data-dir, set GAN_DATA_DIR, or use --download"
    )
    img_stem, lbl_stem = MNIST_FILES[split]
    images = parse_idx(_open_idx(directory, img_stem), img_stem, 3)
    labels = parse_idx(_open_idx(directory, lbl_stem), lbl_stem, 1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{directory}: {images.shape[0]} images but {labels.shape[0]} labels in the {split} "
            f"split; {img_stem} and {lbl_stem} do not belong together, fetch both again"
        )
    tensor = torch.from_numpy(images.copy()).unsqueeze(1)  # [N, 1, 28, 28]
    return ImageData(
        tensor,
        torch.from_numpy(labels.astype(np.int64)),
        {
            "name": "mnist",
            "split": split,
            "path": str(directory),
            "num_images": int(images.shape[0]),
        },
    )


def _idx_sha256(path: Path, gzipped: bool) -> str | None:
    """SHA-256 of the IDX content of ``path`` (decompressed if ``gzipped``); None if unreadable."""
    try:
        raw = gzip.open(path, "rb") if gzipped else open(path, "rb")  # noqa: SIM115
        with cast(IO[bytes], raw) as fh:
            return sha256_stream(fh)
    except (OSError, EOFError, zlib.error):
        return None


class _ChecksumMismatch(Exception):
    """A downloaded file's content is not the one expected (the temporary is discarded)."""


def _download_verified(url: str, dest: Path, expected: str, timeout: float, progress: bool) -> None:
    """Fetch ``url`` and write it to ``dest`` atomically, only if its content has ``expected``
    as SHA-256 (decompressed); else :class:`_ChecksumMismatch` and ``dest`` is untouched."""
    from tqdm import tqdm

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc=url.rsplit("/", 1)[-1],
                disable=not progress,
                leave=False,
            ) as bar:
                for chunk in iter(lambda: resp.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = _idx_sha256(tmp, gzipped=True)
        if got != expected:
            reason = "not a valid gzip file" if got is None else f"SHA-256 of the content is {got}"
            raise _ChecksumMismatch(f"checksum mismatch ({reason}, expected {expected})")

    atomic_write(dest, write)


def download_mnist(
    dest: Path,
    mirrors: Sequence[str] = DEFAULT_MIRRORS,
    timeout: float = 30,
    progress: bool = True,
) -> Path:
    """Download the four gzipped MNIST IDX files into ``dest`` and return ``dest``.

    For each file, mirrors are tried in order (``mirror + name + ".gz"``, urllib only). A file is
    accepted when the SHA-256 of its DECOMPRESSED content matches :data:`MNIST_SHA256`; it is
    written atomically (temporary file in ``dest``, then rename). Files already in ``dest``
    (gzipped or raw) with the right content are kept, so calling this again downloads nothing.
    An HTTP/network error or a checksum mismatch moves on to the next mirror; when every mirror
    fails for a file, :class:`DataError` lists each mirror's failure.
    """
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create MNIST directory {dest}: {exc}; choose a writable --data-dir"
        ) from exc
    if not mirrors:
        raise DataError("no MNIST mirrors given; pass at least one base URL")
    for stem, expected in MNIST_SHA256.items():
        if any(
            (dest / name).is_file() and _idx_sha256(dest / name, name.endswith(".gz")) == expected
            for name in (stem + ".gz", stem)
        ):
            continue
        failures: list[str] = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + stem + ".gz"
            try:
                _download_verified(url, dest / (stem + ".gz"), expected, timeout, progress)
            except (OSError, ValueError, HTTPException) as exc:  # URLError/HTTPError are OSErrors
                failures.append(f"{url}: {exc}")
                continue
            except _ChecksumMismatch as exc:
                failures.append(f"{url}: {exc}")
                continue
            break
        else:
            detail = "\n  ".join(failures)
            raise DataError(
                f"could not download {stem}.gz from any of {len(mirrors)} mirror(s):\n  {detail}\n"
                f"check your internet connection, or copy the four MNIST .gz files into {dest} "
                "yourself"
            )
    return dest


# --------------------------------------------------------------------------------------------
# Image folders
# --------------------------------------------------------------------------------------------


def _scan_folder(directory: Path) -> tuple[list[str], int]:
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
        try:
            with preprocess.open_image(directory / rel) as img:
                arrays.append(preprocess.to_model_pixels(img, resolution, channels))
        except Exception as exc:  # never crash on one bad file; reported in one warning
            why = str(exc) if isinstance(exc, preprocess.ImageDecodeError) else repr(exc)
            skipped.append((rel, why))
    if arrays:
        return np.stack(arrays), skipped
    return np.zeros((0, channels, resolution, resolution), np.uint8), skipped


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
    _require_dir(directory, "image folder", "pass --data-dir pointing at a folder of images")
    files, ignored = _scan_folder(directory)
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


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _mnist_files_present(directory: Path, split: str) -> bool:
    return all(_find_idx(directory, stem) is not None for stem in MNIST_FILES[split])


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

    _check_mnist_split(split)
    directory = Path(data_dir) if data_dir is not None else default_mnist_dir()
    if download and not (directory.is_dir() and _mnist_files_present(directory, split)):
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
