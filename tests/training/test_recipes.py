"""--recipe r3gan and --augment ada: presets, options, a run that logs ADA, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig
from training.cli.train_options import build_train_parser
from training.config import TrainConfig, config_from_options, given_options
from training.data import ImageData
from training.loop import Trainer, resume_trainer


def _options(argv: list[str]) -> TrainConfig:
    return config_from_options(given_options(build_train_parser().parse_args(argv)))


def test_the_r3gan_recipe_sets_its_defaults_and_explicit_options_win() -> None:
    cfg = _options(["--recipe", "r3gan"])
    assert (cfg.model.arch, cfg.loss, cfg.beta1, cfg.beta2) == ("r3gan", "rpgan", 0.0, 0.99)
    assert cfg.r1_gamma > 0 and cfg.recipe == "r3gan"
    cfg = _options(["--recipe", "r3gan", "--r1-gamma", "2", "--lr-g", "1e-3"])
    assert cfg.r1_gamma == 2.0 and cfg.lr_g == 1e-3 and cfg.loss == "rpgan"
    assert _options([]) == TrainConfig()  # dcgan: the defaults as they were


def test_augment_spellings() -> None:
    assert _options([]).augment == "none"
    assert _options(["--augment"]).augment == "diff"  # a bare --augment, as before
    assert _options(["--augment", "ada"]).augment == "ada"
    assert TrainConfig(augment=True).augment == "diff"  # configs written before ada
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "augment": False}).augment == "none"


def _data(n: int = 128) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return ImageData(images, None, {"name": "random-test"})


def _cfg(**kw: object) -> TrainConfig:
    base = config_from_options({"recipe": "r3gan"}).to_dict()
    base.update(steps=8, batch_size=8, seed=3, sample_every=1000, checkpoint_every=4, log_every=1)
    base["model"] = ModelConfig(z_dim=8, g_width=8, d_width=8, arch="r3gan").to_dict()
    base.update(kw)
    return TrainConfig.from_dict(base)


@pytest.mark.slow
def test_r3gan_with_ada_logs_p_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    data, held = _data(), _data(32).images
    full = Trainer(_cfg(augment="ada"), data, tmp_path / "full", heldout=held, progress=False)
    full_end = full.fit()
    assert full.ada is not None
    lines = [json.loads(x) for x in (tmp_path / "full" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "ada_p" in r]
    assert steps and all(0.0 <= r["ada_p"] <= 1.0 for r in steps)
    assert any("r2" in r for r in lines)  # rpgan's penalty on fakes is on
    part = Trainer(
        _cfg(augment="ada", steps=4), data, tmp_path / "part", heldout=held, progress=False
    )
    part.fit()
    resumed = resume_trainer(
        tmp_path / "part" / "checkpoints" / "latest",
        data,
        tmp_path / "part",
        heldout=held,
        steps=8,
        progress=False,
    )
    assert resumed.ada is not None and resumed.ada.p == part.ada.p  # type: ignore[union-attr]
    end = resumed.fit()
    a, b = load_checkpoint(full_end), load_checkpoint(end)
    for x, y in ((a.generator, b.generator), (a.discriminator, b.discriminator)):
        assert x is not None and y is not None
        for (k, v), (_, w) in zip(x.state_dict().items(), y.state_dict().items(), strict=True):
            assert torch.equal(v, w), f"{k} differs after resume"
    assert resumed.ada.state_dict() == full.ada.state_dict()
