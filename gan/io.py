"""File and image I/O: atomic writes, SHA-256, PNG encoding, image grids (no model code).

Everything that writes a file goes through :func:`atomic_write` (or :func:`atomic_directory`
for a whole folder): the data is written to a temporary name in the destination's folder,
flushed to disk and renamed into place, so a crash or a full disk never leaves a half-written
file where a good one was, and the temporary is always removed on failure.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from gan.errors import UserError

if TYPE_CHECKING:  # torch is heavy; the service imports this module before it loads a model
    import torch

# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def sha256_stream(fh: IO[bytes]) -> str:
    """SHA-256 (hex) of everything left in a binary file object, read in 1 MiB chunks."""
    h = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it into place.

    ``write`` may raise (a failed download, a checksum mismatch): the temporary is removed and
    ``path`` is left as it was. The file gets the usual umask-based mode (``mkstemp`` would make
    it owner-only).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    return atomic_write(path, write)


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON (with a final newline) atomically."""
    return write_bytes_atomic(path, (json.dumps(data, indent=2) + "\n").encode())


@contextmanager
def atomic_directory(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        # mkdtemp and safetensors create owner-only entries; use the usual umask-based modes
        # so a checkpoint written by one user (or container) can be served by another.
        umask = _current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old: Path | None = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------
# Images: uint8 [N, C, H, W] batches
# --------------------------------------------------------------------------------------------


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB) -> PNG bytes.

    Deterministic: the same pixels always give the same bytes (no timestamps or metadata).
    """
    from PIL import Image

    arr = np.ascontiguousarray(pixels)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected uint8 [H, W] or [H, W, 3], got {arr.dtype} {list(arr.shape)}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


#: Largest side in pixels of a grid PNG that ``save_images`` writes: 10,000 images of 28 px
#: would make a 6,602-pixel square (77 MB, a gigabyte of memory to build), unreadable anyway.
MAX_GRID_SIDE = 4096


def grid_side(n: int, size: int, pad: int = 2) -> int:
    """The longer side in pixels of the near-square grid of ``n`` images of ``size`` px."""
    columns = grid_columns(n)
    return pad + columns * (size + pad)


def check_grid_size(n: int, size: int, out: str | os.PathLike[str]) -> None:
    """:class:`UserError` when ``n`` images of ``size`` px make a grid PNG above
    :data:`MAX_GRID_SIDE`; the message suggests the forms that scale."""
    side = grid_side(n, size)
    if side > MAX_GRID_SIDE:
        most = max(1, ((MAX_GRID_SIDE - 2) // (size + 2)) ** 2)
        stem = Path(out).with_suffix("")
        raise UserError(
            f"{n} images of {size} px make a {side}x{side} px grid PNG (at most {MAX_GRID_SIDE} "
            f"px a side; {most} images of this size fit): write them as {stem}.npy (one array) "
            f"or to a folder of PNGs ({stem}/), or ask for fewer"
        )


def grid_columns(n: int) -> int:
    """Columns of a grid of ``n`` images: ``ceil(sqrt(n))``, so grids are near-square."""
    return max(1, math.ceil(math.sqrt(n)))


def make_grid(
    images: torch.Tensor | np.ndarray, nrow: int | None = None, pad: int = 2
) -> np.ndarray:
    """uint8 [N, C, H, W] -> one uint8 image [H', W'] (C=1) or [H', W', 3], padded in black."""
    arr = np.asarray(images)  # a CPU tensor converts without a copy
    if arr.ndim != 4:
        raise ValueError(f"expected [N, C, H, W] images, got shape {arr.shape}")
    n, c, h, w = arr.shape
    nrow = nrow or grid_columns(n)
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


def encode_pngs(images: torch.Tensor) -> list[bytes]:
    """uint8 [N, C, H, W] -> one PNG per image."""
    return [encode_png(img) for img in to_hwc(images)]


def encode_grid(images: torch.Tensor, nrow: int | None = None) -> tuple[bytes, int]:
    """uint8 [N, C, H, W] -> (one PNG of all images, its number of columns)."""
    columns = nrow or grid_columns(int(images.shape[0]))
    return encode_png(make_grid(images, nrow=columns)), columns


def save_png(array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    return write_bytes_atomic(path, encode_png(array))


def save_grid(images: torch.Tensor, path: str | os.PathLike[str], nrow: int | None = None) -> Path:
    return save_png(make_grid(images, nrow=nrow), path)


def save_images(images: torch.Tensor, out: str | os.PathLike[str]) -> Path:
    """Write uint8 [N, C, H, W] by ``out``'s form: ``.npy`` array, ``.png`` grid, else a folder."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".npy":

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, to_hwc(images), allow_pickle=False)

        atomic_write(out, write)
    elif suffix == ".png":
        check_grid_size(int(images.shape[0]), int(images.shape[-1]), out)
        save_grid(images, out)
    elif suffix == "":
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(to_hwc(images)):
            save_png(img, out / f"{i:05d}.png")
    else:
        raise ValueError(f"unsupported output {out}: use a .npy file, a .png file, or a folder")
    return out


# --------------------------------------------------------------------------------------------
# Animations: an interpolation path as GIF or WebP
# --------------------------------------------------------------------------------------------

#: Bounds of one frame's duration in milliseconds (GIF stores hundredths of a second, and
#: browsers show GIF frames shorter than 20 ms at 100 ms).
FRAME_MS_MIN = 20
FRAME_MS_MAX = 10_000


def animation_formats() -> tuple[str, ...]:
    """The animated formats this Pillow can write: ``gif`` always, ``webp`` when Pillow has
    libwebp with animation (a feature of its own before Pillow 11, part of ``webp`` since)."""
    from PIL import features

    try:
        webp = bool(features.check_feature("webp_anim"))
    except ValueError:  # Pillow >= 11: no separate feature, animation comes with the module
        webp = bool(features.check_module("webp"))
    return ("gif", "webp") if webp else ("gif",)


def encode_animation(images: torch.Tensor, fmt: str, frame_ms: int) -> bytes:
    """uint8 [N, C, H, W] -> one animated GIF or WebP, a frame per image, each shown
    ``frame_ms`` ms, looping forever. GIF: grey images exact, RGB quantised to 256 colours per
    frame, durations rounded to 10 ms; WebP: lossless. Deterministic. Both formats merge a
    frame identical to the one before it into that one (its duration grows by ``frame_ms``)."""
    from PIL import Image

    if fmt not in animation_formats():
        raise ValueError(f"unsupported animation format {fmt!r}: use {animation_formats()}")
    if not FRAME_MS_MIN <= frame_ms <= FRAME_MS_MAX:
        raise ValueError(f"frame_ms must lie in {FRAME_MS_MIN}..{FRAME_MS_MAX}, got {frame_ms}")
    frames = [Image.fromarray(np.ascontiguousarray(img)) for img in to_hwc(images)]
    if not frames:
        raise ValueError("no images to animate")
    options: dict[str, Any] = {"lossless": True, "method": 4} if fmt == "webp" else {}
    buf = io.BytesIO()
    frames[0].save(
        buf,
        format=fmt.upper(),
        save_all=True,
        append_images=frames[1:],
        duration=frame_ms,
        loop=0,
        **options,
    )
    return buf.getvalue()
