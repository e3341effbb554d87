"""The one image decoder and the one conversion from a decoded image to model pixels.

:func:`decode_image` turns file bytes into a Pillow image for both image folders and uploads:
the format is sniffed from the bytes (PNG, JPEG, WebP, BMP, GIF), the pixel count is checked
from the header before decoding, and every failure is one :class:`ImageDecodeError`.

Training data (image folders, and MNIST at another resolution or channel count) and the HTTP
service (scoring uploaded images with the discriminator) both go through :func:`to_model_pixels`,
so an image the service scores is exactly what the discriminator saw during training.

:func:`to_model_pixels` returns uint8 ``[channels, resolution, resolution]``; the steps are:

1. Apply the EXIF orientation tag (``ImageOps.exif_transpose``), so photos are upright.
2. Normalise the pixel format to 8-bit ``"L"`` or ``"RGB"``:

   * images with alpha (``RGBA``, ``LA``, ``PA``, palette images with a transparent colour) are
     composited onto a BLACK background (MNIST convention: white ink on black), i.e.
     ``round(c * alpha / 255)``; premultiplied ``RGBa``/``La`` already are, so alpha is dropped;
   * 16-bit integer images (``I;16*``, and ``I``, whose values are taken as 0..65535 and
     clipped to it) are scaled to 8 bits with ``round(v * 255 / 65535)`` (not clipped);
   * float images (``F``) are taken as 0..1 when every finite value lies in [0, 1] and as
     0..255 otherwise, then rounded and clipped to 0..255 (NaN becomes 0);
   * ``1`` (bilevel) becomes ``L`` (0/255); ``P`` without transparency, ``CMYK``, ``YCbCr``,
     ``LAB``, ``HSV``, ``RGBX`` become ``RGB`` with Pillow's ``convert``.
3. Convert to ``"L"`` when ``channels == 1`` (Pillow's ITU-R 601-2 luma,
   ``L = R * 299/1000 + G * 587/1000 + B * 114/1000``) or to ``"RGB"`` when ``channels == 3``
   (grey replicated into three channels).
4. Resize so that the SHORTER side equals ``resolution``, keeping the aspect ratio (the longer
   side becomes ``max(resolution, round(long * resolution / short))``), with Pillow's LANCZOS
   filter and no ``reducing_gap`` (exact, and reproducible by :func:`batch_to_model_pixels`).
   A side that already has the target length is not resampled. An image whose resized size
   would exceed :data:`MAX_RESIZED_PIXELS` (an extreme aspect ratio: 1,000,000 x 1 would become
   28,000,000 x 28, gigabytes for a 1 kB PNG) is refused before any work, with
   :class:`ImageDecodeError`.
5. Center-crop to ``resolution x resolution`` (the crop starts at ``(long - resolution) // 2``).

An image already in the target mode and size passes through unchanged. Bump
:data:`PREPROCESS_VERSION` whenever any step changes: it keys the image-folder cache and is
recorded in checkpoints.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gan.errors import UserError

PREPROCESS_VERSION = 1

PREPROCESS_STEPS: list[str] = [
    "1. apply the EXIF orientation tag (ImageOps.exif_transpose)",
    "2. normalise to 8-bit L or RGB: alpha (RGBA, LA, PA, transparent palette) composited onto a "
    "black background as round(c * alpha / 255); 16-bit (I;16*, I as 0..65535) scaled by "
    "round(v * 255 / 65535); F as 0..1 if all values lie in [0, 1] else 0..255, clipped; "
    "1 -> L; P, CMYK, YCbCr, LAB, HSV, RGBX -> RGB",
    "3. convert to L (ITU-R 601-2 luma, L = 0.299 R + 0.587 G + 0.114 B) for 1 channel, "
    "or to RGB (grey replicated) for 3 channels",
    "4. resize so the shorter side equals the resolution, keeping the aspect ratio "
    "(longer side = max(resolution, round(long * resolution / short))), PIL LANCZOS, "
    "no reducing_gap; sides already at the target length are not resampled; an image whose "
    "resized size would exceed 4194304 pixels (an extreme aspect ratio) is refused",
    "5. center crop to resolution x resolution (offset (long - resolution) // 2)",
]

RESAMPLE_NAME = "lanczos"
ALPHA_BACKGROUND = "black"
#: Decoded images with more pixels than this are refused (decompression-bomb guard).
MAX_PIXELS = 64_000_000
#: Step 4 refuses images whose resized size would have more pixels than this (16 MB as RGB):
#: aspect ratios beyond 5,349:1 for 28 px, 1,024:1 for 64 px. Resizing the shorter side
#: multiplies the longer one, so without this bound a 1 kB PNG of 1,000,000 x 1 would take
#: gigabytes and seconds; images below it are converted exactly as before.
MAX_RESIZED_PIXELS = 1 << 22


class ImageDecodeError(UserError, ValueError):
    """An image cannot be decoded or converted; the message says why and what to send instead."""


#: Pillow format names accepted (uploads and image folders), in the order the docs list them.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ALLOWED_DESCRIPTION = "PNG, JPEG, WebP, BMP or GIF (first frame)"


@dataclass(frozen=True)
class DecodedImage:
    """A fully decoded image (first frame) and what was learnt about it on the way."""

    image: Image.Image
    format: str  # one of ALLOWED_FORMATS
    width: int
    height: int
    mode: str  # Pillow mode as decoded, before any conversion (e.g. "RGBA", "I;16", "CMYK")
    frames: int  # frames in the file; only the first is used


def _check_target(resolution: int, channels: int) -> None:
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def sniff_format(data: bytes) -> str | None:
    """The format named by the file's magic bytes, if it is one of :data:`ALLOWED_FORMATS`."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"BM"):
        return "BMP"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    return None


def _describe_unknown(data: bytes) -> str:
    head = data[:64]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"it looks like text ({text[:24]!r}…)"
    return f"its first bytes are {head[:8].hex(' ')}"


def _too_many_pixels(fmt: str, max_pixels: int, size: str) -> ImageDecodeError:
    return ImageDecodeError(
        f"the {fmt} image is too large ({size}): the limit is {max_pixels} pixels, checked "
        "before decoding; downscale it first"
    )


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    """Decode ``data`` (first frame) after checking its format and pixel count.

    Trusts nothing but the bytes: the format is detected from the leading bytes and must be one
    of :data:`ALLOWED_FORMATS`, and Pillow is told to use exactly that decoder. The pixel count
    is read from the header and checked against ``max_pixels`` before any pixel data is decoded
    (decompression bombs); only the first frame of animated files is decoded. Raises
    :class:`ImageDecodeError` for empty data, other formats, too many pixels and truncated or
    corrupt files, with a message that says what to send instead.
    """
    if not data:
        raise ImageDecodeError(f"the file is empty (0 bytes); send a {ALLOWED_DESCRIPTION} image")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageDecodeError(
            f"cannot decode: not a supported image: {_describe_unknown(data)}; the content is "
            f"checked, not the file name or content type; send a {ALLOWED_DESCRIPTION} image"
        )
    try:
        with warnings.catch_warnings():
            # Our own limit applies; Pillow's global one must not warn first. Its error (at
            # twice Image.MAX_IMAGE_PIXELS) stays as a second line of defence.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(fmt, max_pixels, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(
            f"the data starts like a {fmt} file but its header cannot be read; send a complete, "
            f"valid {fmt} file"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageDecodeError(
            f"the {fmt} data is corrupt or truncated ({exc}); send a complete {fmt} file"
        ) from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageDecodeError(f"the {fmt} header says the image is {width}x{height}: no pixels")
    if width * height > max_pixels:
        raise _too_many_pixels(fmt, max_pixels, f"{width}x{height} = {width * height} pixels")
    frames = int(getattr(img, "n_frames", 1) or 1)
    mode = img.mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            if frames > 1:
                img.seek(0)
            img.load()
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(fmt, max_pixels, str(exc)) from exc
    except MemoryError as exc:
        raise ImageDecodeError(
            f"not enough memory to decode this {fmt} image; send a smaller one"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as exc:
        raise ImageDecodeError(
            f"the {fmt} data is corrupt or truncated ({exc}); send a complete {fmt} file"
        ) from exc
    return DecodedImage(img, fmt, width, height, mode, frames)


def open_image(
    source: bytes | str | Path | IO[bytes], *, max_pixels: int | None = None
) -> Image.Image:
    """:func:`decode_image` of a path, raw bytes or a binary file object; the image alone."""
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, (str, Path)):
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise ImageDecodeError(f"cannot read {source}: {exc}") from exc
    else:
        data = source.read()
    return decode_image(data, max_pixels=MAX_PIXELS if max_pixels is None else max_pixels).image


def _composite_on_black(img: Image.Image) -> Image.Image:
    """RGBA or LA -> RGB or L, composited onto black: ``round(c * alpha / 255)``."""
    arr = np.asarray(img, dtype=np.uint32)  # [H, W, 4] or [H, W, 2]
    colour, alpha = arr[..., :-1], arr[..., -1:]
    out = ((colour * alpha * 2 + 255) // 510).astype(np.uint8)  # floor(c * a / 255 + 0.5)
    if out.shape[-1] == 1:
        return Image.fromarray(out[..., 0], "L")
    return Image.fromarray(out, "RGB")


def _scale16(values: np.ndarray) -> Image.Image:
    v = np.clip(values.astype(np.int64), 0, 65535)
    return Image.fromarray(((v * 255 * 2 + 65535) // (2 * 65535)).astype(np.uint8), "L")


def _float_to_l(img: Image.Image) -> Image.Image:
    v = np.asarray(img, dtype=np.float64)
    finite = v[np.isfinite(v)]
    if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
        v = v * 255.0
    v = np.nan_to_num(v, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(v), 0, 255).astype(np.uint8), "L")


def normalise_mode(img: Image.Image) -> Image.Image:
    """Step 2: any Pillow mode -> 8-bit ``"L"`` or ``"RGB"`` (see the module docstring)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "P":
        mode_to = "RGBA" if "transparency" in img.info else "RGB"
        img = img.convert(mode_to)
        return _composite_on_black(img) if mode_to == "RGBA" else img
    if mode == "PA":
        return _composite_on_black(img.convert("RGBA"))
    if mode in ("RGBA", "LA"):
        return _composite_on_black(img)
    if mode == "RGBa":
        return Image.fromarray(np.asarray(img)[..., :3], "RGB")
    if mode == "La":
        return Image.fromarray(np.asarray(img)[..., 0], "L")
    if mode.startswith("I;16") or mode == "I":
        return _scale16(np.asarray(img))
    if mode == "F":
        return _float_to_l(img)
    if mode == "1":
        return img.convert("L")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"unsupported image mode {mode!r}: {exc}") from exc


def resized_size(width: int, height: int, resolution: int) -> tuple[int, int]:
    """Step 4's output size: the shorter side becomes ``resolution``, aspect ratio kept."""
    if width <= height:
        return resolution, max(resolution, round(height * resolution / width))
    return max(resolution, round(width * resolution / height)), resolution


def crop_box(width: int, height: int, resolution: int) -> tuple[int, int, int, int]:
    """Step 5's centered ``(left, top, right, bottom)`` box inside a ``width x height`` image."""
    left, top = (width - resolution) // 2, (height - resolution) // 2
    return left, top, left + resolution, top + resolution


def check_resized_size(width: int, height: int, resolution: int) -> None:
    """Refuse an image that step 4 would blow up beyond :data:`MAX_RESIZED_PIXELS`.

    Checked from the size alone, before any pixel work (an aspect ratio does not change with
    the EXIF orientation).
    """
    new_w, new_h = resized_size(width, height, resolution)
    if new_w * new_h > MAX_RESIZED_PIXELS:
        longer, shorter = max(width, height), min(width, height)
        most = MAX_RESIZED_PIXELS // (resolution * resolution)
        raise ImageDecodeError(
            f"the image is {width}x{height}, an aspect ratio of {longer / shorter:.0f}:1; "
            f"resizing its shorter side to {resolution} would make it {new_w}x{new_h} "
            f"(more than {MAX_RESIZED_PIXELS} pixels); crop it to an aspect ratio of at most "
            f"{most}:1 first"
        )


def to_model_pixels(img: Image.Image, resolution: int, channels: int) -> np.ndarray:
    """Convert a decoded image to uint8 ``[channels, resolution, resolution]`` (steps 1-5)."""
    _check_target(resolution, channels)
    if img.width < 1 or img.height < 1:
        raise ImageDecodeError(f"image has no pixels ({img.width}x{img.height})")
    check_resized_size(img.width, img.height, resolution)  # 4's bound, before any work
    try:
        img = ImageOps.exif_transpose(img)  # 1
    except Exception as exc:  # malformed EXIF block
        raise ImageDecodeError(f"cannot apply the EXIF orientation: {exc}") from exc
    img = normalise_mode(img)  # 2
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:  # 3
        img = img.convert(target)
    size = resized_size(img.width, img.height, resolution)
    if img.size != size:  # 4
        img = img.resize(size, Image.Resampling.LANCZOS)
    if img.size != (resolution, resolution):  # 5
        img = img.crop(crop_box(img.width, img.height, resolution))
    arr = np.asarray(img, dtype=np.uint8)
    arr = arr[None] if channels == 1 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr)


def preprocess_description(resolution: int, channels: int) -> dict[str, Any]:
    """What :func:`to_model_pixels` does for a model of this size, for configs and clients."""
    _check_target(resolution, channels)
    return {
        "version": PREPROCESS_VERSION,
        "function": "gan.preprocess.to_model_pixels",
        "resolution": resolution,
        "channels": channels,
        "color_mode": "L" if channels == 1 else "RGB",
        "alpha_background": ALPHA_BACKGROUND,
        "resize": f"shorter side to {resolution}, aspect ratio kept",
        "resample": RESAMPLE_NAME,
        "crop": f"center {resolution}x{resolution}",
        "output": f"uint8 [{channels}, {resolution}, {resolution}]",
        "max_pixels": MAX_PIXELS,
        "max_resized_pixels": MAX_RESIZED_PIXELS,
        "steps": list(PREPROCESS_STEPS),
    }


# --------------------------------------------------------------------------------------------
# Vectorised version for already-decoded uint8 batches (e.g. MNIST 28 -> 32, 1 -> 3 channels).
# It reproduces Pillow's fixed-point resampling (libImaging/Resample.c) bit for bit, so the
# result equals running every image through to_model_pixels.
# --------------------------------------------------------------------------------------------

_PRECISION_BITS = 32 - 8 - 2  # as in Pillow's Resample.c for 8-bit images
_LANCZOS_SUPPORT = 3.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x *= math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3.0) if -3.0 <= x < 3.0 else 0.0


def _resample_matrix(
    in_size: int, out_size: int, kernel: Callable[[float], float] = _lanczos
) -> np.ndarray:
    """``[out_size, in_size]`` integer weights (scaled by 2**22), Pillow's precompute_coeffs."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        weights = [kernel((x - center + 0.5) / filterscale) for x in range(xmin, xmax)]
        total = sum(weights)
        for x, w in zip(range(xmin, xmax), weights, strict=True):
            k = w / total if total != 0.0 else w
            # normalize_coeffs_8bpc: round half away from zero to fixed point
            matrix[xx, x] = math.trunc(k * (1 << _PRECISION_BITS) + (0.5 if k >= 0 else -0.5))
    return matrix


def _apply_fixed_point(values: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``values @ matrix.T`` with Pillow's rounding and clipping; values uint8-valued floats.

    float64 is exact here: |sum| < 255 * ksize * 2**23 < 2**53.
    """
    acc = values @ matrix.T + float(1 << (_PRECISION_BITS - 1))
    return np.clip(np.floor(acc / float(1 << _PRECISION_BITS)), 0, 255)


def _rgb_to_luma(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, 3, H, W]`` -> ``[N, 1, H, W]`` exactly like Pillow's RGB -> L convert."""
    rgb = images.astype(np.uint32)
    luma = (rgb[:, 0] * 19595 + rgb[:, 1] * 38470 + rgb[:, 2] * 7471 + 0x8000) >> 16
    return luma.astype(np.uint8)[:, None]


def batch_to_model_pixels(
    images: np.ndarray, resolution: int, channels: int, *, chunk: int = 2048
) -> np.ndarray:
    """Steps 3-5 for a uint8 batch ``[N, C, H, W]`` (C = 1 for L, 3 for RGB), vectorised.

    Returns uint8 ``[N, channels, resolution, resolution]``, identical to calling
    :func:`to_model_pixels` on each image (``Image.fromarray`` of it in mode L or RGB). Steps 1-2
    do not apply: the batch is already decoded 8-bit L or RGB. Returns the input unchanged (not
    copied) when it already has the target shape.
    """
    _check_target(resolution, channels)
    if images.ndim != 4 or images.shape[1] not in (1, 3) or images.dtype != np.uint8:
        raise ValueError(
            f"expected a uint8 array [N, C, H, W] with C in (1, 3), got {images.dtype} "
            f"{list(images.shape)}"
        )
    n, c, h, w = images.shape
    if h < 1 or w < 1:
        raise ValueError(f"images have no pixels ({w}x{h})")
    check_resized_size(w, h, resolution)
    # Step 3: channels (RGB -> L with Pillow's luma, L -> RGB by replication after resizing:
    # resampling acts on each channel alone, so replicating later gives the same bytes).
    if c == 3 and channels == 1:
        images = _rgb_to_luma(images)
    new_w, new_h = resized_size(w, h, resolution)
    left, top, right, bottom = crop_box(new_w, new_h, resolution)
    if (new_w, new_h) != (w, h):
        mat_w = _resample_matrix(w, new_w)[left:right] if new_w != w else None
        mat_h = _resample_matrix(h, new_h)[top:bottom] if new_h != h else None
        out = np.empty((n, images.shape[1], resolution, resolution), dtype=np.uint8)
        for start in range(0, n, chunk):
            block = images[start : start + chunk].astype(np.float64)  # [n, c, h, w]
            if mat_w is not None:  # horizontal pass first, as Pillow does
                block = _apply_fixed_point(block, mat_w)  # [n, c, h, R]
            else:
                block = block[..., left:right]
            if mat_h is not None:
                block = _apply_fixed_point(block.swapaxes(-1, -2), mat_h).swapaxes(-1, -2)
            else:
                block = block[..., top:bottom, :]
            out[start : start + chunk] = block.astype(np.uint8)
        images = out
    elif (w, h) != (resolution, resolution):
        images = images[..., top:bottom, left:right]
    if images.shape[1] == 1 and channels == 3:
        images = np.repeat(images, 3, axis=1)
    return np.ascontiguousarray(images)
