"""--recipe r3gan(-small), its schedules and --augment ada: presets, options, the schedules'
values, the EMA's half-life, runs that log them, exact resume, old configs."""

from __future__ import annotations

import json
import math
import signal
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig
from training.cli.train_options import build_train_parser
from training.config import TrainConfig, TrainingError, config_from_options, given_options
from training.data import ImageData
from training.loop import Interrupted, Trainer, resume_trainer
from training.objectives.gan import GANObjective
from training.schedules import (
    beta2_at,
    cosine,
    ema_decay_at,
    ema_half_life_images,
    gamma_at,
    lr_factor,
)

#: The TrainConfig fields the schedules added; configs written before them lack them.
SCHEDULE_FIELDS = (
    "lr_schedule",
    "lr_min_ratio",
    "gamma_schedule",
    "gamma_min_ratio",
    "beta2_schedule",
    "beta2_start",
    "ema_kimg",
    "ema_rampup",
)


def _options(argv: list[str]) -> TrainConfig:
    return config_from_options(given_options(build_train_parser().parse_args(argv)))


def test_the_r3gan_recipe_sets_its_defaults_and_explicit_options_win() -> None:
    cfg = _options(["--recipe", "r3gan"])
    assert (cfg.model.arch, cfg.loss, cfg.beta1, cfg.beta2) == ("r3gan", "rpgan", 0.0, 0.99)
    assert cfg.r1_gamma > 0 and cfg.recipe == "r3gan"
    cfg = _options(["--recipe", "r3gan", "--r1-gamma", "2", "--lr-g", "1e-3"])
    assert cfg.r1_gamma == 2.0 and cfg.lr_g == 1e-3 and cfg.loss == "rpgan"
    assert _options([]) == TrainConfig()  # dcgan: the defaults as they were


def test_the_r3gan_recipes_turn_on_the_schedules_and_r3gan_small_shrinks_the_networks() -> None:
    for recipe in ("r3gan", "r3gan-small"):
        cfg = _options(["--recipe", recipe])
        assert (cfg.lr_schedule, cfg.gamma_schedule, cfg.beta2_schedule) == ("cosine",) * 3
        assert (cfg.lr_min_ratio, cfg.gamma_min_ratio, cfg.beta2_start) == (0.25, 0.1, 0.9)
        assert (cfg.ema_kimg, cfg.ema_rampup) == (20.0, 0.05) and cfg.ema_on
    small = _options(["--recipe", "r3gan-small"]).model
    assert (small.arch, small.g_width, small.d_width) == ("r3gan", 32, 32)
    assert (small.blocks_per_stage, small.expansion) == (1, 1)
    assert _options(["--recipe", "r3gan"]).model.blocks_per_stage == 2  # the full network
    cfg = _options(["--recipe", "r3gan-small", "--lr-schedule", "constant", "--expansion", "2"])
    assert cfg.lr_schedule == "constant" and cfg.model.expansion == 2  # explicit options win
    plain = TrainConfig()
    assert (plain.lr_schedule, plain.gamma_schedule, plain.beta2_schedule) == ("constant",) * 3
    assert plain.ema_kimg == 0.0


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("lr_schedule", "linear"),
        ("lr_min_ratio", 1.5),
        ("gamma_min_ratio", -0.1),
        ("beta2_start", 1.0),
        ("ema_kimg", -1.0),
        ("ema_rampup", float("nan")),
    ],
)
def test_schedule_options_are_checked(option: str, value: object) -> None:
    with pytest.raises(TrainingError, match=option.replace("_", "-")):
        TrainConfig.from_dict({**TrainConfig().to_dict(), option: value})


def test_cosine_schedules_at_start_middle_and_end() -> None:
    cfg = config_from_options({"recipe": "r3gan", "steps": 1000})
    assert cosine(0, 1000, 3.0, 1.0) == 3.0 and cosine(1000, 1000, 3.0, 1.0) == 1.0
    assert cosine(5000, 1000, 3.0, 1.0) == 1.0  # held at the end value past the horizon
    assert cosine(250, 1000, 0.0, 1.0) == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    # learning rate: lr at step 0, halfway between lr and the floor at the middle, the floor at
    # --steps
    assert lr_factor(cfg, 0) == 1.0
    assert lr_factor(cfg, 500) == pytest.approx((1.0 + 0.25) / 2)
    assert lr_factor(cfg, 1000) == pytest.approx(0.25)
    assert 0.25 < lr_factor(cfg, 999) < lr_factor(cfg, 998) < 1.0  # decreasing
    # gamma: --r1-gamma down to a tenth of it
    assert gamma_at(cfg, 0) == 0.1
    assert gamma_at(cfg, 500) == pytest.approx((0.1 + 0.01) / 2)
    assert gamma_at(cfg, 1000) == pytest.approx(0.01)
    # beta2: ramps up from --beta2-start to --beta2
    assert beta2_at(cfg, 0) == 0.9
    assert beta2_at(cfg, 500) == pytest.approx(0.945)
    assert beta2_at(cfg, 1000) == pytest.approx(0.99)
    # constant schedules: the options' own values at every step
    plain = TrainConfig(r1_gamma=0.5)
    for t in (0, 2500, 5000, 10**6):
        assert (lr_factor(plain, t), gamma_at(plain, t), beta2_at(plain, t)) == (1.0, 0.5, 0.99)


def test_the_ema_half_life_formula() -> None:
    cfg = TrainConfig(ema_kimg=10.0, ema_rampup=0.05)
    batch = 64
    assert ema_decay_at(cfg, 0, batch) == 0.0  # nothing seen yet: the EMA copies G
    for step in (1, 10, 100, 3125, 10**5):
        seen = step * batch
        half_life = min(10_000.0, 0.05 * seen)
        assert ema_half_life_images(cfg, seen) == pytest.approx(half_life)
        assert ema_decay_at(cfg, step, batch) == pytest.approx(0.5 ** (batch / half_life))
    # past the ramp, one half-life of images halves the weight of what came before
    after = ema_decay_at(cfg, 10**5, batch)
    assert after ** (10_000 / batch) == pytest.approx(0.5)
    assert ema_decay_at(cfg, 10**5, 128) == pytest.approx(after**2)  # twice the images
    no_ramp = TrainConfig(ema_kimg=10.0, ema_rampup=0.0)
    assert ema_decay_at(no_ramp, 0, batch) == pytest.approx(0.5 ** (batch / 10_000))
    old = TrainConfig()  # --ema-kimg 0: the step ramp as it always was, to the bit
    for t in (0, 1, 50, 99, 100, 5000):
        assert ema_decay_at(old, t, batch) == min(0.999, (1.0 + t) / max(1, 100 + t))
    assert TrainConfig(ema_decay=0.0, ema_kimg=1.0).ema_on and not TrainConfig(ema_decay=0).ema_on


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


class _StopAt(Trainer):
    """A Trainer that stops (as on SIGINT: a checkpoint, then Interrupted) after ``stop_at``
    steps: the first part of an interrupted run of the same config."""

    stop_at = 4

    def train_step(self) -> dict[str, float]:
        stats = super().train_step()
        if self.step == self.stop_at:
            self.request_stop(signal.SIGINT)
        return stats


def _interrupted_then_resumed(
    cfg: TrainConfig, data: ImageData, held: torch.Tensor, out: Path, stop_at: int
) -> tuple[Trainer, Trainer, Path]:
    """(the interrupted trainer, the resumed one, the resumed run's last checkpoint)."""
    part = type("StopHere", (_StopAt,), {"stop_at": stop_at})(
        cfg, data, out, heldout=held, progress=False
    )
    with pytest.raises(Interrupted):
        part.fit()
    resumed = resume_trainer(
        out / "checkpoints" / "latest", data, out, heldout=held, progress=False
    )
    assert resumed.step == stop_at
    return part, resumed, resumed.fit()


def _same_networks(first: Path, second: Path) -> None:
    a, b = load_checkpoint(first), load_checkpoint(second)
    assert a.step == b.step
    for x, y in ((a.generator, b.generator), (a.discriminator, b.discriminator)):
        assert x is not None and y is not None
        for (k, v), (_, w) in zip(x.state_dict().items(), y.state_dict().items(), strict=True):
            assert torch.equal(v, w), f"{k} differs after resume"


def _log(run: Path) -> list[dict[str, float]]:
    return [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_r3gan_with_ada_logs_p_and_resumes_bit_for_bit(tmp_path: Path) -> None:
    data, held = _data(), _data(32).images
    full = Trainer(_cfg(augment="ada"), data, tmp_path / "full", heldout=held, progress=False)
    full_end = full.fit()
    assert full.ada is not None
    lines = _log(tmp_path / "full")
    steps = [r for r in lines if "ada_p" in r]
    assert steps and all(0.0 <= r["ada_p"] <= 1.0 for r in steps)
    assert any("r2" in r for r in lines)  # rpgan's penalty on fakes is on
    part, resumed, end = _interrupted_then_resumed(
        _cfg(augment="ada"), data, held, tmp_path / "part", stop_at=4
    )
    assert part.ada is not None and resumed.ada is not None and resumed.ada.p == part.ada.p
    _same_networks(full_end, end)
    assert resumed.ada.state_dict() == full.ada.state_dict()


def _small_cfg(**kw: object) -> TrainConfig:
    """--recipe r3gan-small at a test's size: every schedule and the half-life EMA on."""
    base = config_from_options({"recipe": "r3gan-small"}).to_dict()
    base.update(steps=6, batch_size=4, seed=5, sample_every=1000, checkpoint_every=1000)
    base.update(log_every=1, ema_kimg=0.1, ema_rampup=0.5)
    base["model"] = ModelConfig(
        z_dim=8, g_width=8, d_width=8, arch="r3gan", blocks_per_stage=1, expansion=1
    ).to_dict()
    base.update(kw)
    return TrainConfig.from_dict(base)


def test_schedules_are_logged_and_resume_bit_for_bit(tmp_path: Path) -> None:
    data, held = _data(64), _data(8).images
    cfg = _small_cfg()
    full = Trainer(cfg, data, tmp_path / "full", heldout=held, progress=False)
    full_end = full.fit()
    lines = [r for r in _log(tmp_path / "full") if "g_loss" in r]
    assert [r["step"] for r in lines] == list(range(1, 7))
    for r in lines:  # the values of the step's own update (t = step - 1)
        t = int(r["step"]) - 1
        assert r["lr_factor"] == pytest.approx(lr_factor(cfg, t), abs=1e-5)
        assert r["gamma"] == pytest.approx(gamma_at(cfg, t), abs=1e-5)
        assert r["beta2"] == pytest.approx(beta2_at(cfg, t), abs=1e-5)
    assert lines[0]["lr_factor"] == 1.0 and lines[-1]["lr_factor"] < 0.4
    # the optimisers hold the last step's values
    opt_d = full.objective.optimisers["opt_d"].param_groups[0]
    assert opt_d["lr"] == pytest.approx(cfg.lr_d * lr_factor(cfg, 5))
    assert opt_d["betas"] == (0.0, pytest.approx(beta2_at(cfg, 5)))
    _, resumed, end = _interrupted_then_resumed(cfg, data, held, tmp_path / "part", stop_at=3)
    _same_networks(full_end, end)
    assert full.g_ema is not None and resumed.g_ema is not None
    for (k, v), w in zip(
        full.g_ema.state_dict().items(), resumed.g_ema.state_dict().values(), strict=True
    ):
        assert torch.equal(v, w), f"EMA {k} differs after resume"
    for name, opt in full.objective.optimisers.items():
        mine = resumed.objective.optimisers[name]
        assert mine.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
        assert mine.param_groups[0]["betas"] == opt.param_groups[0]["betas"]
    resumed_lines = [r for r in _log(tmp_path / "part") if "g_loss" in r]
    assert [r["lr_factor"] for r in resumed_lines] == [r["lr_factor"] for r in lines]


def test_configs_without_the_schedule_fields_load_and_train_as_before(tmp_path: Path) -> None:
    # run.json / checkpoints written before the schedules: the fields are absent
    saved = TrainConfig(r1_gamma=1.0).to_dict()
    for name in SCHEDULE_FIELDS:
        del saved[name]
    assert set(SCHEDULE_FIELDS) <= {f.name for f in fields(TrainConfig)}
    old = TrainConfig.from_dict(saved)
    assert old == TrainConfig(r1_gamma=1.0)
    assert (old.lr_schedule, old.gamma_schedule, old.beta2_schedule, old.ema_kimg) == (
        "constant",
        "constant",
        "constant",
        0.0,
    )
    # the bundled checkpoint's training record (written before the schedules) reads the same
    bundled = json.loads(Path("checkpoints/mnist/config.json").read_text())
    assert not set(SCHEDULE_FIELDS) & set(bundled["training"])
    assert TrainConfig.from_dict(bundled["training"]).lr_schedule == "constant"
    # and trains as before: the optimisers keep their options' values, nothing is logged
    old.steps, old.batch_size, old.log_every = 3, 4, 1
    old.model = ModelConfig(z_dim=8, g_width=8, d_width=8)
    trainer = Trainer(old, _data(32), tmp_path / "old", progress=False)
    trainer.fit()
    for opt, lr in (("opt_g", old.lr_g), ("opt_d", old.lr_d)):
        group = trainer.objective.optimisers[opt].param_groups[0]
        assert group["lr"] == lr and group["betas"] == (old.beta1, old.beta2)
    assert isinstance(trainer.objective, GANObjective)
    assert trainer.objective.loss.r1_gamma == 1.0
    assert trainer.apply_schedules() == {}
    assert not any("lr_factor" in r or "gamma" in r for r in _log(tmp_path / "old"))


def test_a_time_budget_run_says_which_steps_end_the_schedules(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The schedules run to --steps (their horizon, also under --time-budget); when the budget
    holds fewer, the run says which --steps would end them with it."""
    cfg = _small_cfg(steps=10**6, time_budget_s=0.5, sample_every=10**6)
    Trainer(cfg, _data(64), tmp_path / "budget", progress=False).fit()
    err = capsys.readouterr().err
    assert "--lr-schedule, --gamma-schedule, --beta2-schedule run to --steps 1000000" in err
    assert "give --steps" in err
