"""Image files for the upload tests, good and bad, built in memory (nothing is downloaded)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def save(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def gradient(mode: str = "RGB", size: tuple[int, int] = (40, 30)) -> Image.Image:
    """A deterministic non-constant image (so conversions and D's outputs are not trivial)."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.float64)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float64)[:, None]
    r = np.broadcast_to(x, (h, w))
    g = np.broadcast_to(y, (h, w))
    b = (r + g) / 2
    rgb = np.stack([r, g, b], axis=-1).round().astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand: any header (even a lying one) around the given scanlines."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(rows))
        + _chunk(b"IEND", b"")
    )


def png16_gray(size: int = 8) -> bytes:
    """16-bit grayscale PNG (Pillow mode I;16), values 0..65535 across each row."""
    vals = np.linspace(0, 65535, size).round().astype(">u2")
    rows = b"".join(b"\x00" + vals.tobytes() for _ in range(size))
    return raw_png(size, size, 16, 0, rows)


def png16_rgb(size: int = 8) -> bytes:
    """16-bit-per-channel RGB PNG."""
    px = np.zeros((size, 3), dtype=">u2")
    px[:, 0] = np.linspace(0, 65535, size).round()
    px[:, 2] = 65535
    rows = b"".join(b"\x00" + px.tobytes() for _ in range(size))
    return raw_png(size, size, 16, 2, rows)


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes whose header claims width x height pixels (a decompression bomb)."""
    return raw_png(width, height, 8, 0, b"\x00" * 64)


def thin_png(width: int = 1_000_000, height: int = 1) -> bytes:
    """A few kB of PNG whose shorter side resized to 28 px would make it 28,000,000 x 28."""
    row = b"\x00" + (bytes(range(256)) * (width // 256 + 1))[:width]  # filter byte + pixels
    return raw_png(width, height, 8, 0, row * height)


def chunk_spam_png(chunks: int) -> bytes:
    """A valid 28x28 PNG padded with ``chunks`` empty ancillary chunks (12 bytes each) after its
    header: few pixels, many bytes, and Pillow parses every chunk in Python."""
    png = save(gradient("L", (28, 28)), "PNG")
    end_of_ihdr = 8 + 25  # signature, then IHDR: length, type, 13 bytes, CRC
    return png[:end_of_ihdr] + _chunk(b"zzZz", b"") * chunks + png[end_of_ihdr:]


def cmyk_jpeg() -> bytes:
    return save(gradient("CMYK"), "JPEG", quality=95)


def palette_gif() -> bytes:
    return save(gradient("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "GIF")


def animated_gif() -> bytes:
    """Two frames: white, then black; only the first (white) may be scored."""
    first, second = Image.new("L", (20, 20), 255), Image.new("L", (20, 20), 0)
    return save(first, "GIF", save_all=True, append_images=[second], duration=100)


def truncated_png() -> bytes:
    data = save(gradient("RGB", (64, 64)), "PNG")
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    data = save(Image.effect_noise((64, 64), 60).convert("RGB"), "JPEG")
    return data[:300]


GOOD = {
    "gray_png": lambda: save(gradient("L"), "PNG"),
    "rgb_png": lambda: save(gradient("RGB"), "PNG"),
    "rgba_png": lambda: save(gradient("RGBA"), "PNG"),
    "la_png": lambda: save(gradient("LA"), "PNG"),
    "bilevel_png": lambda: save(gradient("1"), "PNG"),
    "png16_gray": png16_gray,
    "png16_rgb": png16_rgb,
    "cmyk_jpeg": cmyk_jpeg,
    "rgb_jpeg": lambda: save(gradient("RGB"), "JPEG"),
    "palette_gif": palette_gif,
    "animated_gif": animated_gif,
    "webp": lambda: save(gradient("RGB"), "WEBP", lossless=True),
    "bmp": lambda: save(gradient("RGB"), "BMP"),
}
