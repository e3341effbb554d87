"""Safe image decoding for uploads, and PNG encoding of generated images.

Decoding trusts nothing the client says: the format is detected from the leading bytes and must
be one of :data:`ALLOWED_FORMATS`; Pillow is then told to use exactly that decoder. The pixel
count is read from the header and checked against a limit before any pixel data is decoded
(decompression bombs), and only the first frame of animated files is decoded. Every failure is
an :class:`ImageRejected` whose message says what is wrong and what to send instead.

Converting a decoded image to model pixels is NOT done here: that is
:func:`training.preprocess.to_model_pixels`, the same function that prepared the training data.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

#: Pillow format names accepted for uploads, in the order the docs list them.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
ALLOWED_DESCRIPTION = "PNG, JPEG, WebP, BMP or GIF (first frame)"


class ImageRejected(ValueError):
    """An upload cannot be used; the message says why and what to send instead."""


@dataclass(frozen=True)
class DecodedImage:
    """A fully decoded upload (first frame) and what was learnt about it on the way."""

    image: Image.Image
    format: str  # one of ALLOWED_FORMATS
    width: int
    height: int
    mode: str  # Pillow mode as decoded, before any conversion (e.g. "RGBA", "I;16", "CMYK")
    frames: int  # frames in the file; only the first is used


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


def _too_many_pixels(fmt: str, max_pixels: int, size: str) -> ImageRejected:
    return ImageRejected(
        f"the {fmt} image is too large ({size}); the limit is {max_pixels} pixels "
        "(GAN_MAX_IMAGE_PIXELS), checked before decoding; downscale it before uploading"
    )


def decode_image(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode ``data`` (first frame) after checking format and pixel count.

    Raises :class:`ImageRejected` for empty data, formats outside :data:`ALLOWED_FORMATS`,
    images with more than ``max_pixels`` pixels (checked from the header, before decoding)
    and truncated or corrupt files.
    """
    if not data:
        raise ImageRejected(f"the file is empty (0 bytes); send a {ALLOWED_DESCRIPTION} image")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageRejected(
            f"not a supported image: {_describe_unknown(data)}; the content is checked, not the "
            f"file name or content type; send a {ALLOWED_DESCRIPTION} image"
        )
    try:
        # formats=[fmt]: only the decoder that matches the magic bytes may run. Pillow's own
        # decompression-bomb check (warning above Image.MAX_IMAGE_PIXELS, error at twice that)
        # stays in place as a second line of defence above our stricter limit.
        img = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(fmt, max_pixels, str(exc)) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            f"the data starts like a {fmt} file but its header cannot be read; send a complete, "
            f"valid {fmt} file"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise ImageRejected(
            f"the {fmt} data is corrupt or truncated ({exc}); send a complete {fmt} file"
        ) from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageRejected(f"the {fmt} header says the image is {width}x{height}: no pixels")
    if width * height > max_pixels:
        raise _too_many_pixels(fmt, max_pixels, f"{width}x{height} = {width * height} pixels")
    frames = int(getattr(img, "n_frames", 1) or 1)
    mode = img.mode
    try:
        if frames > 1:
            img.seek(0)
        img.load()
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(fmt, max_pixels, str(exc)) from exc
    except MemoryError as exc:
        raise ImageRejected(
            f"not enough memory to decode this {fmt} image; send a smaller one"
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError) as exc:
        raise ImageRejected(
            f"the {fmt} data is corrupt or truncated ({exc}); send a complete {fmt} file"
        ) from exc
    return DecodedImage(img, fmt, width, height, mode, frames)


def encode_png(pixels: np.ndarray) -> bytes:
    """uint8 ``[H, W]`` (grey) or ``[H, W, 3]`` (RGB) -> PNG bytes.

    Deterministic: the same pixels always give the same bytes (no timestamps or metadata).
    """
    arr = np.ascontiguousarray(pixels)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"expected uint8 [H, W] or [H, W, 3], got {arr.dtype} {list(arr.shape)}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
