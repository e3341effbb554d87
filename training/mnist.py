"""MNIST: the four IDX files (gzipped or raw), parsed without any pickle, and their verified
download.

:func:`load_mnist` reads a split as stored (uint8 ``[N, 1, 28, 28]`` with labels; conversion to
the model's size is :func:`training.data.load_dataset`'s job). :func:`download_mnist` fetches the
gzipped files from mirrors and keeps a file only when the SHA-256 of its decompressed content is
:data:`MNIST_SHA256`.
"""

from __future__ import annotations

import gzip
import os
import urllib.request
import zlib
from collections.abc import Sequence
from http.client import HTTPException
from pathlib import Path
from typing import IO, cast

import numpy as np
import torch

from gan.io import atomic_write, sha256_stream
from training.imagedata import DataError, ImageData, require_dir

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


def default_mnist_dir() -> Path:
    """``$GAN_DATA_DIR`` if set, else ``../shared/data/mnist`` beside the project root."""
    env = os.environ.get("GAN_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist"


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


def check_mnist_split(split: str) -> None:
    if split not in MNIST_FILES:
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'")


def load_mnist(data_dir: str | os.PathLike[str] | None = None, split: str = "train") -> ImageData:
    """Load MNIST ``split`` ("train" or "test") from a folder of IDX files, gzipped or raw.

    Images are returned as stored: uint8 ``[N, 1, 28, 28]``; see :func:`load_dataset` for other
    resolutions and channel counts.
    """
    check_mnist_split(split)
    directory = Path(data_dir) if data_dir is not None else default_mnist_dir()
    require_dir(
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


def mnist_files_present(directory: Path, split: str) -> bool:
    return all(_find_idx(directory, stem) is not None for stem in MNIST_FILES[split])
