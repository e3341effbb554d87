"""gan.io: grid PNGs are bounded in size; .npy and folders are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gan.errors import UserError
from gan.io import (
    MAX_GRID_SIDE,
    animation_formats,
    check_grid_size,
    encode_animation,
    grid_side,
    save_images,
)


def test_grid_side_is_the_near_square_layout() -> None:
    assert grid_side(64, 28) == 2 + 8 * 30
    assert grid_side(10_000, 64) == 6602  # the 77 MB PNG a user once got


def test_a_huge_grid_png_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserError) as info:
        check_grid_size(10_000, 64, tmp_path / "big.png")
    message = str(info.value)
    assert "6602x6602" in message and f"at most {MAX_GRID_SIDE}" in message
    assert str(tmp_path / "big.npy") in message and "folder" in message
    check_grid_size(1024, 64, tmp_path / "ok.png")  # 2,114 px: fine


def test_save_images_refuses_the_grid_but_writes_npy(tmp_path: Path) -> None:
    images = torch.zeros(20_000, 1, 28, 28, dtype=torch.uint8)  # 4,202 px
    with pytest.raises(UserError):
        save_images(images, tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists()
    save_images(images, tmp_path / "big.npy")
    assert np.load(tmp_path / "big.npy").shape == (20_000, 28, 28)


def _frames(data: bytes) -> list[tuple[np.ndarray, int | None, int | None]]:
    """(pixels, duration, loop) of every frame of an animation."""
    import io as _io

    from PIL import Image

    img = Image.open(_io.BytesIO(data))
    out = []
    for k in range(getattr(img, "n_frames", 1)):
        img.seek(k)
        img.load()
        out.append((np.asarray(img.convert("L")), img.info.get("duration"), img.info.get("loop")))
    return out


@pytest.mark.parametrize("fmt", animation_formats())
def test_animation_has_a_frame_per_image_its_duration_and_loops(fmt: str) -> None:
    images = torch.stack([torch.full((1, 6, 5), 40 * k, dtype=torch.uint8) for k in range(4)])
    images[2, 0, 1, 1] = 255
    data = encode_animation(images, fmt, 120)
    assert data == encode_animation(images, fmt, 120)  # deterministic
    frames = _frames(data)
    assert len(frames) == 4
    for k, (pixels, duration, loop) in enumerate(frames):
        assert np.array_equal(pixels, images[k, 0].numpy())  # grey frames are exact
        assert duration == 120 and loop == 0


def test_animation_merges_repeated_frames_keeping_the_total_time() -> None:
    images = torch.zeros((3, 1, 4, 4), dtype=torch.uint8)
    images[2] = 9
    frames = _frames(encode_animation(images, "gif", 100))
    assert [d for _, d, _ in frames] == [200, 100]


def test_animation_refuses_bad_arguments() -> None:
    images = torch.zeros((2, 1, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="frame_ms"):
        encode_animation(images, "gif", 5)
    with pytest.raises(ValueError, match="unsupported animation format"):
        encode_animation(images, "png", 100)
    assert "gif" in animation_formats()
