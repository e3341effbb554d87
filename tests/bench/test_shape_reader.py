"""bench/augment_folder.py's exact shape reader and variety gap, which the folder figures in
docs/training.md rest on: real shapes read clean, each kind of malformation is named, and the
variety gap grows as samples lose the data's variety (as truncation makes them)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def reader() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("augment_folder", BENCH / "augment_folder.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def _folder_images(reader: ModuleType, tmp_path: Path, per_class: int = 60) -> torch.Tensor:
    root = reader.make_folder(tmp_path / "shapes", per_class, seed=0)
    files = sorted(root.glob("*/*.png"))
    return torch.stack(
        [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    )


def _image(draw: str, colour: tuple[int, int, int] = (255, 64, 0)) -> np.ndarray:
    img = Image.new("RGB", (32, 32))
    d = ImageDraw.Draw(img)
    if draw == "large":
        d.rectangle((2, 2, 29, 29), fill=colour)
    elif draw == "small":
        d.rectangle((10, 10, 14, 14), fill=colour)
    elif draw == "rectangle":
        d.rectangle((8, 10, 24, 18), fill=colour)
    elif draw == "two colours":
        d.rectangle((8, 8, 15, 23), fill=colour)
        d.rectangle((16, 8, 23, 23), fill=(0, 64, 255))
    elif draw == "cross":
        d.rectangle((8, 14, 23, 17), fill=colour)
        d.rectangle((14, 8, 17, 23), fill=colour)
    return np.asarray(img).transpose(2, 0, 1).copy()


def test_the_real_shapes_read_clean_and_each_malformation_is_named(
    reader: ModuleType, tmp_path: Path
) -> None:
    real = _folder_images(reader, tmp_path)
    row = reader.read_all(real)
    assert row["clean_share"] == 1.0 and row["discs"] == row["squares"] == 60
    assert row["why_malformed"] == {}
    assert reader.shape_verdict(_image("blank")) == "empty"
    assert reader.shape_verdict(_image("large")) == "too large"
    assert reader.shape_verdict(_image("small")) == "too small"
    assert reader.shape_verdict(_image("rectangle")) == "box not square"
    assert reader.shape_verdict(_image("two colours")) == "colour not flat"
    assert reader.shape_verdict(_image("cross")) == "fill between"
    bad = torch.from_numpy(np.stack([_image("blank"), _image("large"), _image("large")]))
    row = reader.read_all(torch.cat([real[:1], bad]))
    assert row["clean_share"] == 0.25
    assert row["why_malformed"] == {"too large": 0.5, "empty": 0.25}


def test_the_variety_gap_grows_as_samples_lose_the_datas_variety(
    reader: ModuleType, tmp_path: Path
) -> None:
    real = _folder_images(reader, tmp_path)
    ref = reader.read_all(real)
    halves = reader.read_all(real[1::2], real=reader.read_all(real[::2]))["variety_gap"]
    assert halves < 0.35  # one half of the data against the other

    # Greyed colours (saturation halved, as truncated samples look): the gap grows, and
    # saturation is the attribute that moves.
    x = real.float()
    top = x.max(dim=0, keepdim=True).values
    grey = (x + (x.max(dim=1, keepdim=True).values - x) * 0.5).round().clamp(0, 255)
    greyed = torch.where(top > 0, grey, x).to(torch.uint8)
    row = reader.read_all(greyed, real=ref)
    assert row["clean_share"] == 1.0
    assert row["variety_gap"] > 3 * halves
    w1 = row["attribute_w1"]
    assert w1["saturation"] == max(w1[a] for a in ("size", "x", "y", "saturation"))

    # Every shape the same size at the same place: size and position collapse.
    centred = torch.zeros_like(real)
    for i in range(len(real)):
        img = Image.new("RGB", (32, 32))
        ImageDraw.Draw(img).rectangle((11, 11, 20, 20), fill=(255, 0, 128))
        centred[i] = torch.from_numpy(np.asarray(img).transpose(2, 0, 1).copy())
    row = reader.read_all(centred, real=ref)
    assert row["variety_gap"] > 5 * halves
    assert min(row["attribute_w1"][a] for a in ("size", "x", "y")) > 0.5


def test_a_palette_folder_has_its_modes_read(reader: ModuleType, tmp_path: Path) -> None:
    """--palette K: 2 K modes (shape x hue); the real images hit all of them about evenly, and
    a model drawing one hue of one shape is read as one mode, KL log(2 K)."""
    root = reader.make_folder(tmp_path / "shapes", 120, seed=0, palette=6)
    files = sorted(root.glob("*/*.png"))
    real = torch.stack(
        [torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1) for f in files]
    )
    row = reader.read_all(real, palette=6)
    assert row["clean_share"] == 1.0 and row["modes"] == 12 and row["modes_hit"] == 12
    assert row["mode_kl"] < 0.05  # 240 images over 12 modes: sampling noise only
    discs = real[:120]  # discs/ sorts first
    hues = [round(reader.shape_hue(im) * 6) % 6 for im in discs.numpy()]
    one = discs[[i for i, h in enumerate(hues) if h == hues[0]]]
    collapsed = reader.read_all(one, palette=6)
    assert collapsed["modes_hit"] == 1
    assert collapsed["mode_counts"][hues[0]] == len(one) and sum(collapsed["mode_counts"]) == len(
        one
    )
    assert abs(collapsed["mode_kl"] - math.log(12)) < 1e-9
