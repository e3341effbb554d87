"""gan-sample --method and gan-eval --method: the same images for the same seed, the options
validated, and a clear error for a method that needs a calibration the checkpoint lacks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gan.checkpoint import load_checkpoint
from gan.samplers import parse_options
from gan.samplers.dispatch import Models, sample
from tests.conftest import make_checkpoint
from training.cli import eval_main, sample_main
from training.export import calibrate_checkpoint
from training.metrics.evaluator import Evaluator


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_checkpoint(tmp_path_factory.mktemp("cli") / "mnist", width=4, dataset="mnist")
    real = (torch.rand(50, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 255).byte()
    calibrate_checkpoint(path, real, None, num=200)
    return path


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("drs", ["keep=0.9", "max_proposals=8"]),
        ("mh", ["proposals=3"]),
        ("langevin", ["steps=2"]),
        ("pixel_ascent", ["steps=2", "start=sample"]),
    ],
)
def test_gan_sample_method_writes_the_cores_images(
    calibrated: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    method: str,
    options: list[str],
) -> None:
    out = tmp_path / "s.npy"
    args = ["--checkpoint", str(calibrated), "--num", "6", "--seed", "4", "--method", method]
    args += [a for o in options for a in ("--method-option", o)]
    assert sample_main([*args, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"method {method};" in stdout and "per image:" in stdout
    values = dict(o.split("=") for o in options)
    typed = parse_options(method, {k: (v if k == "start" else float(v)) for k, v in values.items()})
    want = sample(Models.of(load_checkpoint(calibrated)), typed, seed=4, n=6).images
    np.testing.assert_array_equal(np.load(out), want[:, 0].numpy())


def test_gan_sample_method_errors_are_one_line(
    calibrated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.npy")
    base = ["--checkpoint", str(calibrated), "--out", out]
    cases = [
        (["--method", "drs", "--method-option", "keep=1.5"], "keep must be at most 0.99"),
        (["--method", "drs", "--method-option", "keep"], "write NAME=VALUE"),
        (["--method", "mh", "--method-option", "keep=0.5"], "takes proposals; unknown: keep"),
        (["--method-option", "steps=3"], "method 'plain' takes no options"),
    ]
    for extra, message in cases:
        assert sample_main([*base, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert sample_main([*base, "--method", "argmax"]) == 2
    assert "invalid choice: 'argmax'" in capsys.readouterr().err
    raw = make_checkpoint(tmp_path / "raw", width=4, dataset="mnist")
    for method in ("drs", "mh"):
        assert sample_main(["--checkpoint", str(raw), "--method", method, "--out", out]) == 2
        err = capsys.readouterr().err
        assert f"method {method!r} needs a calibrated discriminator" in err
        assert f"gan-calibrate --checkpoint {raw}" in err


def test_gan_eval_method_evaluates_exactly_what_gan_sample_method_writes(
    calibrated: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen: list[torch.Tensor] = []
    original = Evaluator.evaluate_images

    def spy(self: Evaluator, images: torch.Tensor, *args: object, **kwargs: object) -> object:
        seen.append(images.clone())
        return original(self, images, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Evaluator, "evaluate_images", spy)
    result = tmp_path / "r.json"
    assert (
        eval_main(
            [
                "--checkpoint",
                str(calibrated),
                "--num",
                "30",
                "--seed",
                "9",
                "--batch-size",
                "7",
                "--method",
                "drs",
                "--method-option",
                "keep=0.9",
                "--json",
                str(result),
                "--quiet",
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "sampling: drs (keep=0.9, max_proposals=32); acceptance rate" in report
    out = tmp_path / "s.npy"
    assert (
        sample_main(
            [
                "--checkpoint",
                str(calibrated),
                "--num",
                "30",
                "--seed",
                "9",
                "--method",
                "drs",
                "--method-option",
                "keep=0.9",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    (images,) = seen
    np.testing.assert_array_equal(np.load(out), images[:, 0].numpy())
    sampling = json.loads(result.read_text())["sampling"]
    assert sampling["method"] == "drs" and sampling["method_options"] == {
        "keep": 0.9,
        "max_proposals": 32,
    }
    assert 0 < sampling["acceptance_rate"] <= 1
    assert sampling["cost_per_image"]["forwards"] == pytest.approx(2 * sampling["mean_proposals"])
    assert (
        eval_main(["--checkpoint", str(calibrated), "--num", "30", "--method", "mh", "--write"])
        == 2
    )
    assert "--write stores the model's own metrics" in capsys.readouterr().err
    raw = make_checkpoint(tmp_path / "raw", width=4, dataset="mnist")
    assert eval_main(["--checkpoint", str(raw), "--num", "30", "--method", "drs"]) == 2
    assert "gan-calibrate --checkpoint" in capsys.readouterr().err


def test_gan_sample_takes_n_as_the_api_does(tmp_path: Path, tiny_checkpoint: Path) -> None:
    """--n (the API's name) and the older --num write the same images."""
    from training.cli import sample_main

    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    assert sample_main(["--checkpoint", str(tiny_checkpoint), "--n", "3", "--out", str(a)]) == 0
    assert sample_main(["--checkpoint", str(tiny_checkpoint), "--num", "3", "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_gan_sample_refuses_a_huge_grid_before_sampling(
    tmp_path: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import sample_main

    out = tmp_path / "big.png"
    assert (
        sample_main(["--checkpoint", str(tiny_checkpoint), "-n", "50000", "--out", str(out)]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "big.npy" in err[0]
    assert not out.exists()
