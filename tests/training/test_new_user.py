"""What a new user hits with their own folder (issue 19): the data summary and the rate line,
the cadence under a time budget, near-square grids, --data-dir inferring a folder, one-line
warnings and bad option values."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan import preprocess
from gan.models import ModelConfig
from training.cli import train_main
from training.config import TrainConfig
from training.data import ImageData
from training.loop import CADENCE_TARGETS, Trainer, grid_layout, scaled_cadence

TINY = ["--z-dim", "8", "--g-width", "4", "--d-width", "4", "--batch-size", "4"]


def _folder(root: Path, n: int = 12) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((16, 16, 3), (i * 20) % 256, np.uint8)).save(root / f"{i:02d}.png")
    return root


def _common(tmp_path: Path) -> list[str]:
    return [*TINY, "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--resolution", "28"]


def test_scaled_cadence_aims_at_the_targets_and_keeps_given_options() -> None:
    defaults = {"log_every": 50, "sample_every": 500, "checkpoint_every": 1000}
    scaled = scaled_cadence(defaults, ("log_every", "sample_every", "checkpoint_every"), 400)
    assert scaled == {"log_every": 4, "sample_every": 40, "checkpoint_every": 50}
    kept = scaled_cadence(defaults, ("sample_every",), 400)
    assert kept["log_every"] == 50 and kept["checkpoint_every"] == 1000
    # never sparser than the option's own value
    assert scaled_cadence(defaults, ("log_every",), 10**7)["log_every"] == 50


def _data() -> ImageData:
    torch.manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8)
    return ImageData(images, torch.arange(32) % 2, {"name": "synthetic"}, ["a", "b"])


def test_a_time_budget_scales_the_cadence_of_options_left_out(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model=ModelConfig(resolution=28, channels=1, z_dim=8, g_width=4, d_width=4),
        batch_size=4,
        steps=10**6,
        time_budget_s=1.5,
        ema_warmup=2,
    )
    trainer = Trainer(cfg, _data(), tmp_path / "r", progress=False)
    trainer.auto_cadence = tuple(CADENCE_TARGETS)
    trainer.fit()
    steps = trainer.step
    logged = [json.loads(line) for line in (tmp_path / "r" / "log.jsonl").read_text().splitlines()]
    loss_points = [r for r in logged if "d_loss" in r]
    grids = list((tmp_path / "r" / "samples").glob("*.png"))
    ckpts = list((tmp_path / "r" / "checkpoints").glob("step-*"))
    assert steps > 20  # a tiny model does far more than 20 steps in 1.5 s
    # the defaults (log 50, grid 500, checkpoint 1000) would give one point, grid, checkpoint
    assert len(loss_points) >= 10
    assert len(grids) >= 3
    assert trainer.cadence["checkpoint_every"] < 1000 and trainer.cadence["sample_every"] < 500
    assert len(ckpts) >= 1 and "auto_cadence" in trainer.state()


def test_explicit_cadence_is_kept_under_a_budget(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model=ModelConfig(resolution=28, channels=1, z_dim=8, g_width=4, d_width=4),
        batch_size=4,
        steps=10**6,
        time_budget_s=0.5,
    )
    trainer = Trainer(cfg, _data(), tmp_path / "r", progress=False)
    trainer.fit()  # auto_cadence empty: the options' own
    assert trainer.cadence == {"log_every": 50, "sample_every": 500, "checkpoint_every": 1000}


@pytest.mark.parametrize("classes", [2, 3, 5, 10, 16])
def test_conditional_grids_are_near_square_with_one_class_per_column(classes: int) -> None:
    columns, n = grid_layout(classes)
    rows = n // columns
    assert columns * rows == n >= 64 and columns % classes == 0
    assert max(rows / columns, columns / rows) <= 1.5


def test_a_conditional_grid_png_is_near_square(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model=ModelConfig(resolution=28, channels=1, z_dim=8, g_width=4, d_width=4),
        batch_size=4,
        steps=1,
        conditional=True,
    )
    trainer = Trainer(cfg, _data(), tmp_path / "r", progress=False)
    with Image.open(trainer.save_samples()) as grid:
        width, height = grid.size
    assert max(width / height, height / width) <= 1.5  # was 2 columns x 32 rows (1:16)


def test_gan_train_summarises_the_data_and_the_rate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images = _folder(tmp_path / "imgs")
    args = ["--data-dir", str(images), "--steps", "12", "--out", str(tmp_path / "run")]
    assert train_main([*args, *_common(tmp_path)]) == 0
    captured = capsys.readouterr()
    err = captured.err + captured.out
    # --data-dir with images and no MNIST files: --data folder, said in one line
    assert "training on it as --data folder" in err
    assert "data: 11 training images (folder" in err and "1 held out" in err
    assert "docs/training.md" in err
    assert "it/s: 12 steps take ~" in err
    assert "for reference, measured here:" in err


def test_a_folder_file_that_warns_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _folder(tmp_path / "imgs")
    original = preprocess.to_model_pixels

    def warns(img: Image.Image, resolution: int, channels: int) -> np.ndarray:
        if img.getpixel((0, 0)) == (20, 20, 20):  # 01.png
            warnings.warn("image file is truncated\nsecond line", UserWarning, stacklevel=1)
        return original(img, resolution, channels)

    monkeypatch.setattr(preprocess, "to_model_pixels", warns)
    args = ["--data", "folder", "--data-dir", str(images), "--steps", "1"]
    assert train_main([*args, "--out", str(tmp_path / "run"), *_common(tmp_path)]) == 0
    err = capsys.readouterr().err.splitlines()
    mentions = [line for line in err if "truncated" in line]
    assert mentions == [
        f"warning: {images / '01.png'}: decoding warned: image file is truncated second line"
    ]
    assert not any("warnings.warn" in line or ".py:" in line for line in err)


def test_a_bad_resolution_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert train_main(["--resolution", "48", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --resolution: invalid choice: 48")


def test_gan_train_quotes_the_nearest_measured_run() -> None:
    """Issue 19 #1: at start gan-train says what a measured run of that size reached, and how
    long its steps would take at the rate just measured."""
    from training.loop import REFERENCE_RUNS, reference_line

    mnist = reference_line(28, 1, rate=10.0)
    assert mnist is not None and "MNIST" in mnist and "6,000 steps" in mnist
    assert "~10 min at this rate" in mnist  # 6,000 steps at 10 it/s
    folder = reference_line(32, 3, rate=5.0)
    assert folder is not None and "discs and squares" in folder and "29 % cleanly drawn" in folder
    assert "the folder defaults" in folder and "4,062 steps (~14 min at this rate" in folder
    assert reference_line(128, 3, rate=5.0) is None  # nothing measured near 128 px
    assert all(r.steps > 0 for r in REFERENCE_RUNS)


def _run_config(run: Path) -> dict[str, object]:
    config: dict[str, object] = json.loads((run / "run.json").read_text())["train_config"]
    return config


def _config_value(config: dict[str, object], key: str) -> object:
    model = config["model"]
    assert isinstance(model, dict)
    return model[key] if key in model else config[key]


def test_a_small_folder_gets_the_folder_defaults_for_options_not_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.config import FOLDER_DEFAULTS

    images = _folder(tmp_path / "imgs")
    base = ["--data", "folder", "--data-dir", str(images), "--steps", "2", *_common(tmp_path)]
    # TINY gives the widths; the rest of FOLDER_DEFAULTS is left to the folder defaults.
    given = {"g_width", "d_width", "z_dim", "batch_size"}
    assert train_main([*base, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    config = _run_config(tmp_path / "a")
    for key, value in FOLDER_DEFAULTS.items():
        if key not in given:
            assert _config_value(config, key) == value, key
    assert config["augment"] == "diff"
    assert "folder defaults (under 10,000 images, for options not given): --augment diff" in out
    # An option given explicitly wins, and the line names only what was applied.
    assert train_main([*base, "--augment", "none", "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert _run_config(tmp_path / "b")["augment"] == "none"
    assert "--augment diff" not in out


def test_folder_defaults_leave_large_folders_other_modes_and_recipes_alone() -> None:
    from training.config import (
        FOLDER_DEFAULTS,
        FOLDER_DEFAULTS_CONDITIONAL,
        FOLDER_DEFAULTS_MAX_IMAGES,
        RECIPES,
        config_from_options,
        folder_defaults,
    )

    cfg = config_from_options({})
    small, applied = folder_defaults(cfg, set(), FOLDER_DEFAULTS_MAX_IMAGES - 1)
    assert applied == {k: v for k, v in FOLDER_DEFAULTS.items()} and small.augment == "diff"
    assert small.augment_policies == "color,translation,cutout"  # all three, unconditional
    cond = config_from_options({"conditional": True})
    small, applied = folder_defaults(cond, set(), 100)
    assert applied == {**FOLDER_DEFAULTS, **FOLDER_DEFAULTS_CONDITIONAL}
    assert small.augment_policies == "color,translation"  # conditional: no cutout
    assert folder_defaults(cond, {"augment_policies"}, 100)[0].augment_policies == (
        "color,translation,cutout"
    )
    assert folder_defaults(cfg, set(), FOLDER_DEFAULTS_MAX_IMAGES) == (cfg, {})
    assert folder_defaults(cfg, set(FOLDER_DEFAULTS), 100) == (cfg, {})
    vae = config_from_options({"mode": "vae"})
    assert folder_defaults(vae, set(), 100) == (vae, {})  # augmentation is a GAN's
    r3 = config_from_options({"recipe": "r3gan-small"})
    _, applied = folder_defaults(r3, set(), 100)
    assert not set(applied) & set(RECIPES["r3gan-small"])  # the recipe's own values stay
