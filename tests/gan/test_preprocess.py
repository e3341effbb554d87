"""training.preprocess: the shared image -> model-pixels conversion."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan import preprocess
from gan.preprocess import (
    PREPROCESS_STEPS,
    ImageDecodeError,
    batch_to_model_pixels,
    open_image,
    preprocess_description,
    resized_size,
    to_model_pixels,
)
from training.data import load_mnist


def _noise(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _roundtrip(img: Image.Image, fmt: str, **kwargs: object) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return open_image(buf.getvalue())


# ---- identity and geometry -------------------------------------------------------------------


def test_identity_for_gray_image_at_target_size() -> None:
    arr = _noise((28, 28))
    out = to_model_pixels(Image.fromarray(arr, "L"), 28, 1)
    assert out.dtype == np.uint8 and out.shape == (1, 28, 28)
    np.testing.assert_array_equal(out[0], arr)


def test_identity_for_rgb_image_at_target_size() -> None:
    arr = _noise((32, 32, 3))
    out = to_model_pixels(Image.fromarray(arr, "RGB"), 32, 3)
    assert out.shape == (3, 32, 32)
    np.testing.assert_array_equal(out, arr.transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("w", "h", "res", "expected"),
    [
        (60, 20, 20, (60, 20)),
        (20, 60, 20, (20, 60)),
        (120, 40, 20, (60, 20)),
        (28, 28, 32, (32, 32)),
        (10, 11, 32, (32, 35)),
        (33, 32, 32, (33, 32)),
        (3, 1000, 28, (28, 9333)),
    ],
)
def test_resized_size_keeps_aspect_and_shorter_side(
    w: int, h: int, res: int, expected: tuple[int, int]
) -> None:
    assert resized_size(w, h, res) == expected


def test_wide_image_is_center_cropped_without_resampling() -> None:
    # 60x20, shorter side already 20: only the middle 20 columns survive.
    arr = np.full((20, 60), 255, np.uint8)
    arr[:, 20:40] = np.arange(20, dtype=np.uint8)[None, :]
    out = to_model_pixels(Image.fromarray(arr, "L"), 20, 1)
    assert out.shape == (1, 20, 20)
    np.testing.assert_array_equal(out[0], arr[:, 20:40])


def test_tall_image_is_resized_then_center_cropped() -> None:
    # 40 wide, 120 tall: white top and bottom thirds, black middle third -> 20x60 -> middle 20 rows.
    arr = np.zeros((120, 40), np.uint8)
    arr[:40] = 255
    arr[80:] = 255
    out = to_model_pixels(Image.fromarray(arr, "L"), 20, 1)
    assert out.shape == (1, 20, 20)
    # The middle of the crop is far from the white bands: pure black after LANCZOS.
    assert out[0, 4:16].max() == 0
    # Its edges touch the bands' ringing/blur region but are not white.
    assert out[0].max() < 255


def test_upscaling_small_image_fills_target() -> None:
    out = to_model_pixels(Image.new("L", (7, 7), 200), 28, 1)
    assert out.shape == (1, 28, 28)
    assert np.all(out == 200)  # a constant image stays constant under normalised LANCZOS


def test_exif_orientation_is_applied() -> None:
    # 30 wide x 10 tall, left half white; orientation 6 = rotate 90 degrees clockwise to view,
    # so the upright image is 10 wide x 30 tall with the white half on top.
    arr = np.zeros((10, 30), np.uint8)
    arr[:, :15] = 255
    img = Image.fromarray(arr, "L")
    exif = Image.Exif()
    exif[0x0112] = 6
    loaded = _roundtrip(img, "PNG", exif=exif.tobytes())
    out = to_model_pixels(loaded, 10, 1)[0]  # crop rows 10..19 of 30: 5 white then 5 black
    assert np.all(out[:5] == 255) and np.all(out[5:] == 0)


# ---- extreme aspect ratios: refused before the resize could blow them up ----------------------


def _png(width: int, height: int, mode: str = "L") -> bytes:
    """A ``width x height`` PNG of a horizontal gradient (compresses to ~1 kB even for 10**6 x 1)."""
    row = (np.arange(width) % 251).astype(np.uint8)
    arr = np.broadcast_to(row, (height, width))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr), "L").convert(mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("width", "height", "res"),
    [(1_000_000, 1, 28), (1, 1_000_000, 28), (4_194_304, 1, 28), (1025, 1, 64), (5350, 1, 28)],
)
def test_extreme_aspect_ratio_is_refused_before_any_work(width: int, height: int, res: int) -> None:
    img = open_image(_png(width, height), max_pixels=4_194_304)
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match=r"ratio of \d+:1.*crop it to an aspect ratio"):
        to_model_pixels(img, res, 1)
    with pytest.raises(ImageDecodeError, match="aspect ratio"):
        batch_to_model_pixels(np.zeros((1, 1, height, width), np.uint8), res, 1)
    assert time.perf_counter() - start < 1.0  # refused from the size, not after resizing


@pytest.mark.parametrize(
    ("width", "height", "res", "mode"), [(5349, 1, 28, "L"), (1, 1024, 64, "RGB")]
)
def test_aspect_ratio_at_the_bound_converts_as_before(
    width: int, height: int, res: int, mode: str
) -> None:
    img = open_image(_png(width, height, mode))
    size = resized_size(width, height, res)
    assert size[0] * size[1] <= preprocess.MAX_RESIZED_PIXELS
    out = to_model_pixels(img, res, 3 if mode == "RGB" else 1)
    # Exactly Pillow's resize and centre crop, the conversion that applied before the bound.
    full = img.resize(size, Image.Resampling.LANCZOS)
    want = np.asarray(full.crop(preprocess.crop_box(*size, res)))
    want = want[None] if mode == "L" else want.transpose(2, 0, 1)
    np.testing.assert_array_equal(out, want)


_PEAK_SCRIPT = """
import io, resource, sys, time
import numpy as np
from PIL import Image
from gan.preprocess import ImageDecodeError, decode_image, to_model_pixels

def png(w, h, mode):
    row = (np.arange(w) % 251).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(row, (h, w))), "L").convert(mode).save(
        buf, "PNG")
    return buf.getvalue()

cases = [(1_000_000, 1, 28, "L"), (1, 1_000_000, 28, "RGB"), (4_194_304, 1, 64, "RGB"),
         (5349, 1, 28, "RGB"), (1, 1024, 64, "RGB")]
decoded = [(decode_image(png(w, h, m), max_pixels=4_194_304).image, r, 3 if m == "RGB" else 1)
           for w, h, r, m in cases]
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
start = time.perf_counter()
outcomes = []
for img, res, ch in decoded:
    try:
        outcomes.append(to_model_pixels(img, res, ch).shape)
    except ImageDecodeError:
        outcomes.append("refused")
seconds = time.perf_counter() - start
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) / 1024, seconds, outcomes)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's unit")
def test_thin_image_conversion_keeps_peak_memory_flat() -> None:
    """Before the bound, converting the 1,000,000 x 1 PNG alone took 2.8 GB and 5-19 s."""
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    grown_mb, seconds, outcomes = proc.stdout.strip().split(" ", 2)
    assert outcomes == "['refused', 'refused', 'refused', (3, 28, 28), (3, 64, 64)]"
    assert float(grown_mb) < 64, f"peak RSS grew by {grown_mb} MB while converting"
    assert float(seconds) < 5


# ---- pixel formats -----------------------------------------------------------------------------


def test_rgba_is_composited_on_black() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[0, :, 3] = 0
    rgba[1, :, 3] = 255
    rgba[2, :, 3] = 128
    rgba[3, :, 3] = 51
    out = to_model_pixels(Image.fromarray(rgba, "RGBA"), 4, 3)
    for c in range(3):  # rows of the image: alpha 0, 255, 128, 51 over white
        np.testing.assert_array_equal(out[c, :, 0], [0, 255, 128, 51])


def test_la_is_composited_on_black() -> None:
    la = np.stack([np.full((2, 2), 200, np.uint8), np.array([[0, 255], [100, 255]], np.uint8)], -1)
    out = to_model_pixels(Image.fromarray(la, "LA"), 2, 1)
    np.testing.assert_array_equal(out[0], [[0, 200], [round(200 * 100 / 255), 200]])


def test_palette_with_transparency_uses_black_and_palette_colours() -> None:
    img = Image.new("P", (2, 1))
    img.putpalette([255, 255, 255, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    img.info["transparency"] = 0
    out = to_model_pixels(img, 1, 3)  # 2x1 needs no resize; the center crop keeps column 0
    assert out.shape == (3, 1, 1)
    np.testing.assert_array_equal(out[:, 0, 0], [0, 0, 0])  # transparent white -> black
    loaded = _roundtrip(img, "PNG", transparency=0)
    rgb = to_model_pixels(loaded, 1, 3)
    np.testing.assert_array_equal(rgb[:, 0, 0], [0, 0, 0])


def test_palette_without_transparency_keeps_colours() -> None:
    img = Image.new("P", (1, 1))
    img.putpalette([10, 20, 30] + [0] * 765)
    out = to_model_pixels(img, 1, 3)
    np.testing.assert_array_equal(out[:, 0, 0], [10, 20, 30])


def test_16bit_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 32896, 65535]], np.uint16)
    img = _roundtrip(Image.fromarray(values), "PNG")
    assert img.mode.startswith("I;16")
    out = to_model_pixels(img, 1, 1)  # 4x1 -> crop column 1 of 4
    assert out.shape == (1, 1, 1)
    full = preprocess.normalise_mode(img)
    np.testing.assert_array_equal(np.asarray(full), [[0, 1, 128, 255]])


def test_mode_i_is_treated_as_16bit() -> None:
    img = Image.fromarray(np.array([[0, 65535, 70000, -5]], np.int32), "I")
    np.testing.assert_array_equal(np.asarray(preprocess.normalise_mode(img)), [[0, 255, 255, 0]])


def test_float_images() -> None:
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32), "F")
    np.testing.assert_array_equal(np.asarray(preprocess.normalise_mode(unit)), [[0, 128, 255]])
    wide = Image.fromarray(np.array([[0.0, 100.4, 300.0, np.nan]], np.float32), "F")
    np.testing.assert_array_equal(np.asarray(preprocess.normalise_mode(wide)), [[0, 100, 255, 0]])


def test_cmyk_and_bilevel() -> None:
    cmyk = Image.new("CMYK", (2, 2), (0, 0, 0, 0))
    np.testing.assert_array_equal(to_model_pixels(cmyk, 2, 3), np.full((3, 2, 2), 255))
    cmyk_black = Image.new("CMYK", (2, 2), (0, 0, 0, 255))
    np.testing.assert_array_equal(to_model_pixels(cmyk_black, 2, 1), np.zeros((1, 2, 2)))
    bilevel = Image.new("1", (2, 2), 1)
    np.testing.assert_array_equal(to_model_pixels(bilevel, 2, 1), np.full((1, 2, 2), 255))


def test_rgb_to_gray_uses_pillow_luma_and_gray_to_rgb_replicates() -> None:
    arr = _noise((8, 8, 3), seed=3)
    img = Image.fromarray(arr, "RGB")
    np.testing.assert_array_equal(to_model_pixels(img, 8, 1)[0], np.asarray(img.convert("L")))
    gray = _noise((8, 8), seed=4)
    out = to_model_pixels(Image.fromarray(gray, "L"), 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[c], gray)


def test_invalid_targets() -> None:
    img = Image.new("L", (4, 4))
    with pytest.raises(ValueError, match="channels must be 1"):
        to_model_pixels(img, 4, 2)
    with pytest.raises(ValueError, match="resolution must be a positive integer"):
        to_model_pixels(img, 0, 1)


# ---- description --------------------------------------------------------------------------------


def test_steps_and_description() -> None:
    assert len(PREPROCESS_STEPS) == 5
    assert [s.split(".")[0] for s in PREPROCESS_STEPS] == ["1", "2", "3", "4", "5"]
    d = preprocess_description(32, 3)
    assert d["resolution"] == 32 and d["channels"] == 3 and d["color_mode"] == "RGB"
    assert d["alpha_background"] == "black" and d["resample"] == "lanczos"
    assert d["steps"] == PREPROCESS_STEPS and d["version"] == preprocess.PREPROCESS_VERSION
    assert preprocess_description(28, 1)["color_mode"] == "L"
    with pytest.raises(ValueError):
        preprocess_description(28, 4)


# ---- open_image ------------------------------------------------------------------------------


def test_open_image_rejects_corrupt_and_truncated_data() -> None:
    with pytest.raises(ImageDecodeError, match="cannot decode"):
        open_image(b"definitely not an image")
    buf = io.BytesIO()
    Image.fromarray(_noise((64, 64)), "L").save(buf, "PNG")
    with pytest.raises(ImageDecodeError):
        open_image(buf.getvalue()[: len(buf.getvalue()) // 2])


def test_open_image_pixel_limit() -> None:
    buf = io.BytesIO()
    Image.new("L", (100, 100)).save(buf, "PNG")
    with pytest.raises(ImageDecodeError, match="the limit is 9999 pixels"):
        open_image(buf.getvalue(), max_pixels=9999)
    assert open_image(buf.getvalue(), max_pixels=10000).size == (100, 100)


def test_open_image_gif_first_frame() -> None:
    frames = [Image.new("L", (4, 4), v) for v in (40, 200)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = to_model_pixels(open_image(buf.getvalue()), 4, 1)
    assert np.all(out == 40)


# ---- vectorised batch helper ------------------------------------------------------------------


def _per_image(batch: np.ndarray, res: int, ch: int) -> np.ndarray:
    mode = "L" if batch.shape[1] == 1 else "RGB"
    imgs = [Image.fromarray(im[0] if mode == "L" else im.transpose(1, 2, 0), mode) for im in batch]
    return np.stack([to_model_pixels(im, res, ch) for im in imgs])


@pytest.mark.parametrize(
    ("shape", "res", "ch"),
    [
        ((6, 1, 28, 28), 32, 1),
        ((6, 1, 28, 28), 64, 3),
        ((6, 1, 28, 28), 28, 3),
        ((5, 3, 40, 60), 32, 1),
        ((5, 3, 60, 40), 32, 3),
        ((5, 1, 37, 23), 16, 1),
        ((4, 3, 20, 100), 28, 3),
        ((4, 1, 28, 56), 28, 1),
        ((4, 1, 50, 51), 49, 1),
        ((3, 3, 31, 300), 64, 1),
    ],
)
def test_batch_matches_per_image(shape: tuple[int, int, int, int], res: int, ch: int) -> None:
    batch = _noise(shape, seed=sum(shape))
    batch[:, :, : shape[2] // 3] = 255  # sharp edges exercise clipping of LANCZOS ringing
    out = batch_to_model_pixels(batch, res, ch, chunk=4)
    np.testing.assert_array_equal(out, _per_image(batch, res, ch))


@pytest.mark.parametrize(("res", "ch"), [(32, 1), (64, 3), (28, 3)])
def test_batch_matches_per_image_on_real_mnist(res: int, ch: int) -> None:
    digits = load_mnist(split="test").images[:32].numpy()
    np.testing.assert_array_equal(
        batch_to_model_pixels(digits, res, ch), _per_image(digits, res, ch)
    )


def test_batch_identity_returns_input() -> None:
    batch = _noise((3, 1, 28, 28))
    assert batch_to_model_pixels(batch, 28, 1) is batch


def test_batch_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="uint8 array"):
        batch_to_model_pixels(np.zeros((2, 28, 28), np.uint8), 28, 1)
    with pytest.raises(ValueError, match="uint8 array"):
        batch_to_model_pixels(np.zeros((2, 1, 28, 28), np.float32), 28, 1)
