"""training.config: one field, one option; the command line round-trips into TrainConfig."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from gan.models import ModelConfig
from training.cli import build_train_parser, train_main
from training.config import TrainConfig, TrainingError, config_from_options, given_options


def test_every_field_has_an_option_and_defaults_round_trip() -> None:
    parser = build_train_parser()
    flags = {a.dest for a in parser._actions}
    for f in [*fields(TrainConfig), *fields(ModelConfig)]:
        if f.name not in ("model", "num_classes"):  # num_classes comes from --conditional
            assert f.name in flags, f.name
    args = parser.parse_args([])
    assert given_options(args) == {}
    assert config_from_options(given_options(args)) == TrainConfig()


def test_options_reach_the_config() -> None:
    args = build_train_parser().parse_args(
        [
            "--steps",
            "7",
            "--lr-g",
            "1e-3",
            "--loss",
            "hinge",
            "--no-channels-last",
            "--time-budget",
            "30",
            "--resolution",
            "32",
            "--channels",
            "3",
            "--z-dim",
            "16",
        ]
    )
    cfg = config_from_options(given_options(args))
    assert (cfg.steps, cfg.lr_g, cfg.loss, cfg.channels_last, cfg.time_budget_s) == (
        7,
        1e-3,
        "hinge",
        False,
        30.0,
    )
    assert (cfg.model.resolution, cfg.model.channels, cfg.model.z_dim) == (32, 3, 16)
    assert cfg.lr_d == TrainConfig().lr_d  # not given: the default


def test_bad_choices_are_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main(["--loss", "wgan"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert train_main(["--resolution", "30"]) == 2


def test_resume_refuses_options_it_would_ignore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], mnist_dir: Path
) -> None:
    run = tmp_path / "run"
    assert (
        train_main(
            [
                "--data",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--limit",
                "64",
                "--steps",
                "1",
                "--batch-size",
                "16",
                "--z-dim",
                "8",
                "--g-width",
                "8",
                "--d-width",
                "8",
                "--out",
                str(run),
                "--no-progress",
                "--no-eval",
            ]
        )
        == 0
    )
    capsys.readouterr()
    rc = train_main(
        [
            "--data-dir",
            str(mnist_dir),
            "--limit",
            "64",
            "--resume",
            str(run),
            "--lr-g",
            "0.1",
            "--no-progress",
            "--no-eval",
        ]
    )
    assert rc == 2
    assert "--lr-g cannot change" in capsys.readouterr().err


def test_mode_names_the_model_kind_and_mode_ae_keeps_its_ae_kind() -> None:
    def kind(*argv: str) -> str:
        return config_from_options(given_options(build_train_parser().parse_args(argv))).kind

    assert kind("--mode", "vae") == "vae" and kind("--mode", "ebm") == "ebm"
    assert kind("--mode", "ae") == "vae"  # --ae-kind's default, as before --mode vae existed
    assert kind("--mode", "ae", "--ae-kind", "vae") == "vae"
    assert kind("--mode", "ae", "--ae-kind", "plain") == "ae"
    with pytest.raises(TrainingError, match="--mode ae --ae-kind plain"):
        kind("--mode", "vae", "--ae-kind", "plain")
