"""gan.io: grid PNGs are bounded in size; .npy and folders are not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gan.errors import UserError
from gan.io import MAX_GRID_SIDE, check_grid_size, grid_side, save_images


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
