"""Calibration of D's logit: the fits, DRS's pilot statistics, the round trip through a
checkpoint, gan-calibrate (and that it never leaves a half-written checkpoint), and the
calibration gan-train writes on --export."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gan.checkpoint import Calibration, CheckpointError, load_checkpoint, read_checkpoint_config
from gan.io import sha256_file
from gan.samplers.drs import DRSOptions, drs_steps
from gan.samplers.seeds import proposal_latents
from gan.samplers.steps import run_steps
from tests.conftest import make_checkpoint
from training.cli import calibrate_main
from training.export import (
    KEEP_LEVELS,
    calibrate_checkpoint,
    drs_pilot,
    expected_calibration_error,
    fit_calibration,
    isotonic_fit,
    platt_fit,
)


def logistic_data(a: float, b: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits of reals and fakes such that P(real | logit) = sigmoid(a * logit + b) exactly:
    equal priors, fakes ~ N(0, 1), reals ~ N(a, 1) gives log-odds a * x - a^2 / 2."""
    rng = np.random.default_rng(seed)
    fake = rng.normal(0.0, 1.0, n)
    real = rng.normal(a, 1.0, n)
    shift = b + a * a / 2  # logit' = x + shift / a makes the log-odds a * logit' + b
    return real - shift / a, fake - shift / a


def test_platt_recovers_a_known_logistic_relation() -> None:
    real, fake = logistic_data(a=2.0, b=-0.5, n=20_000, seed=0)
    x = np.concatenate([real, fake])
    t = np.concatenate([np.ones(real.size), np.zeros(fake.size)])
    a, b = platt_fit(x, t, np.full(x.size, 1.0))
    assert a == pytest.approx(2.0, abs=0.05) and b == pytest.approx(-0.5, abs=0.05)


def test_isotonic_is_monotone_and_ece_sees_miscalibration() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=5000)
    t = (rng.random(5000) < np.where(x > 0, 0.9, 0.1)).astype(float)  # a step, not a sigmoid
    w = np.full(x.size, 1.0)
    xs, ys = isotonic_fit(x, t, w)
    assert all(b > a for a, b in itertools.pairwise(xs))
    assert all(b >= a for a, b in itertools.pairwise(ys))
    raw = expected_calibration_error(1 / (1 + np.exp(-x)), t, w)
    fitted = expected_calibration_error(np.interp(x, xs, ys), t, w)
    assert fitted < raw / 3


def test_fit_prefers_platt_on_logistic_data_and_isotonic_when_clearly_better() -> None:
    real, fake = logistic_data(a=1.5, b=0.3, n=5000, seed=2)
    entry = fit_calibration(real, fake, seed=0)
    assert entry["kind"] == "platt"
    assert entry["platt"]["a"] == pytest.approx(1.5, abs=0.1)
    assert entry["ece"] < 0.03
    assert set(entry["candidates"]) == {"uncalibrated", "platt", "isotonic"}
    # A staircase: P(real | logit) is 0.02, then a flat 0.5, then 0.98. No sigmoid of the logit
    # has a flat middle and steep edges; isotonic regression does.
    rng = np.random.default_rng(3)
    x = rng.uniform(-4, 4, 20_000)
    is_real = rng.random(x.size) < np.select([x < -2, x > 2], [0.02, 0.98], 0.5)
    stepped = fit_calibration(x[is_real], x[~is_real], seed=0)
    assert stepped["kind"] == "isotonic"
    typed = Calibration.from_config(stepped, "x")
    assert typed is not None
    assert typed.probability(-3.0) < 0.06 and typed.probability(3.0) > 0.94
    assert typed.probability(0.0) == pytest.approx(0.5, abs=0.06)
    assert stepped["ece"] < stepped["candidates"]["platt"]["ece"]
    with pytest.raises(CheckpointError, match="at least 10 held-out real images, got 3"):
        fit_calibration(real[:3], fake)


def test_drs_pilot_predicts_the_acceptance_and_the_density_of_drs() -> None:
    """A 1-D toy (G(z) = z, D the exact log-ratio to N(1, 0.5^2)): at keep 0.5 the share DRS
    accepts matches the pilot's prediction, and the accepted samples follow the density
    N(0, 1) * sigmoid(F - gamma), normalised."""
    mu, sigma = 1.0, 0.5

    def logit(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        return math.log(1 / sigma) - (x - mu) ** 2 / (2 * sigma**2) + x**2 / 2

    pilot_z = proposal_latents([(10**6 + i, 0) for i in range(20_000)], 1)[:, 0]
    pilot = drs_pilot(logit(pilot_z).numpy())
    assert pilot["keep_levels"] == list(KEEP_LEVELS)
    entry = {
        "kind": "platt",
        "platt": {"a": 1.0, "b": 0.0},
        "ece": 0.0,
        "num_real": 10,
        "num_fake": 10,
        "drs": pilot,
    }
    calibration = Calibration.from_config(entry, "toy")
    assert calibration is not None
    keep = 0.5
    steps = drs_steps(list(range(4000)), 1, None, DRSOptions(keep, 500), calibration)
    result = run_steps(steps, lambda z, y: z.clone(), lambda x, y: logit(x[:, 0]).float())
    assert result.acceptance_rate == pytest.approx(
        calibration.drs.expected_acceptance(keep), abs=0.02
    )
    from gan.samplers.drs import drs_log_odds

    grid = torch.linspace(-6, 6, 24001, dtype=torch.float64)
    gamma = calibration.drs.gamma(keep)
    f = drs_log_odds(logit(grid), calibration.drs.d_max, gamma, calibration.drs.eps)
    density = torch.exp(-(grid**2) / 2) * torch.sigmoid(f)
    cdf = torch.cumsum(density, 0)
    cdf = (cdf / cdf[-1]).numpy()
    accepted = np.sort(result.images[:, 0].double().numpy())
    model = np.interp(accepted, grid.numpy(), cdf)
    n = accepted.size
    ks = max((np.arange(1, n + 1) / n - model).max(), (model - np.arange(n) / n).max())
    assert ks < 0.031  # the 0.1 % critical KS distance for n = 4000


# --------------------------------------------------------------------------------------------
# Through a checkpoint
# --------------------------------------------------------------------------------------------


def noise_images(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 255).byte()


def test_calibration_round_trips_through_the_checkpoint(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "c", width=4)
    old = load_checkpoint(path)
    assert old.config.calibration is None and old.config.raw["calibration"] is None
    hashes = {
        name: sha256_file(path / name)
        for name in ("generator.safetensors", "discriminator.safetensors")
    }
    entry = calibrate_checkpoint(path, noise_images(100), None, num=300, real_source="noise")
    ck = load_checkpoint(path)
    cal = ck.config.calibration
    assert cal is not None and cal.raw == entry
    assert (cal.kind, cal.num_real, cal.num_fake, cal.real_source) == (
        entry["kind"],
        100,
        300,
        "noise",
    )
    assert cal.drs.d_max == entry["drs"]["d_max"] and cal.drs.gammas == tuple(
        entry["drs"]["gammas"]
    )
    assert cal.probability(0.3) == pytest.approx(
        1 / (1 + math.exp(-(entry["platt"]["a"] * 0.3 + entry["platt"]["b"])))
    )
    assert ck.checkpoint_hash == old.checkpoint_hash
    assert hashes == {name: sha256_file(path / name) for name in hashes}
    # A refit replaces the entry whole (no stale isotonic table from an earlier fit).
    raw = json.loads((path / "config.json").read_text())
    raw["calibration"]["isotonic"] = {"stale": True}
    (path / "config.json").write_text(json.dumps(raw))
    calibrate_checkpoint(path, noise_images(100), None, num=300)
    assert json.loads((path / "config.json").read_text())["calibration"].get("isotonic") != {
        "stale": True
    }


def test_checkpoints_written_before_calibration_existed_still_load(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "old", width=4)
    raw = json.loads((path / "config.json").read_text())
    del raw["calibration"]  # as every checkpoint written before it, the bundled one included
    (path / "config.json").write_text(json.dumps(raw))
    assert load_checkpoint(path).config.calibration is None


def valid_entry() -> dict[str, Any]:
    return {
        "kind": "platt",
        "platt": {"a": 1.0, "b": 0.0},
        "ece": 0.01,
        "num_real": 10,
        "num_fake": 10,
        "drs": {
            "d_max": 1.0,
            "eps": 1e-6,
            "keep_levels": [0.0, 0.5],
            "gammas": [-1.0, 0.0],
            "acceptance": [0.5, 0.3],
            "num_images": 10,
        },
    }


@pytest.mark.parametrize(
    ("mutate", "phrase"),
    [
        (lambda e: e.update(kind="beta"), "'kind' must be one of platt, isotonic"),
        (lambda e: e["platt"].update(a=float("inf")), "finite numbers 'a' and 'b'"),
        (lambda e: e.update(kind="isotonic"), "needs 'isotonic'"),
        (lambda e: e.update(ece=2), "'ece' must be a number in"),
        (lambda e: e.update(num_fake=0), "'num_fake' must be a positive integer"),
        (lambda e: e["drs"].update(gammas=[0.0, -1.0]), "'gammas' must be non-decreasing"),
        (lambda e: e["drs"].update(keep_levels=[0.0, 1.0]), "within \\[0, 1\\)"),
        (lambda e: e["drs"].update(acceptance=[0.5, 0.0]), "in \\(0, 1\\]"),
        (lambda e: e.pop("drs"), "'calibration.drs' must be an object"),
    ],
)
def test_a_bad_calibration_entry_is_refused_with_the_fix(mutate: Any, phrase: str) -> None:
    entry = valid_entry()
    mutate(entry)
    with pytest.raises(CheckpointError, match=phrase) as err:
        Calibration.from_config(entry, "/x/config.json")
    assert str(err.value).startswith("/x/config.json: 'calibration")
    assert Calibration.from_config(valid_entry(), "x") is not None
    assert Calibration.from_config(None, "x") is None


def test_keep_outside_the_measured_levels_is_refused() -> None:
    cal = Calibration.from_config(valid_entry(), "x")
    assert cal is not None
    assert cal.drs.gamma(0.25) == pytest.approx(-0.5)
    with pytest.raises(CheckpointError, match="outside the levels"):
        cal.drs.gamma(0.9)


# --------------------------------------------------------------------------------------------
# gan-calibrate
# --------------------------------------------------------------------------------------------


def test_gan_calibrate_on_an_mnist_checkpoint(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = make_checkpoint(tmp_path / "m", width=4, dataset="mnist")
    rc = calibrate_main(
        ["--checkpoint", str(path), "--data-dir", str(mnist_dir), "--num", "400", "--quiet"]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    cal = read_checkpoint_config(path).calibration
    assert cal is not None and cal.num_real == 400 and cal.num_fake == 400
    assert cal.real_source == "MNIST test set (never trained on)"
    assert f"calibrated D on {path}: {cal.kind}, ECE" in out and "only config.json changed" in out


def test_gan_calibrate_refuses_what_it_cannot_use(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder_ckpt = make_checkpoint(tmp_path / "f", width=4, dataset="folder")
    assert calibrate_main(["--checkpoint", str(folder_ckpt)]) == 2
    assert "--data folder --data-dir DIR" in capsys.readouterr().err
    assert calibrate_main(["--checkpoint", str(folder_ckpt), "--data", "mnist"]) == 2
    assert "MNIST's test set is no held-out data of it" in capsys.readouterr().err
    assert calibrate_main(["--checkpoint", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert calibrate_main(["--checkpoint", str(folder_ckpt), "--num", "3"]) == 2
    assert "--num must be at least 10" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["fit", "rename"])
def test_gan_calibrate_never_leaves_a_half_written_checkpoint(
    tmp_path: Path,
    mnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    path = make_checkpoint(tmp_path / "m", width=4, dataset="mnist")
    before = {p.name: p.read_bytes() for p in path.iterdir()}

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    if where == "fit":  # a failure while fitting: nothing was written yet
        monkeypatch.setattr("training.export.fit_calibration", fail)
    else:  # a failure as the new config.json is renamed into place
        monkeypatch.setattr("gan.io.os.replace", fail)
    with pytest.raises(OSError):
        calibrate_main(
            ["--checkpoint", str(path), "--data-dir", str(mnist_dir), "--num", "50", "--quiet"]
        )
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before  # no temporary left
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert load_checkpoint(path).config.calibration is None


def test_gan_calibrate_on_a_folder_checkpoint_uses_the_held_out_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from training.cli import train_main

    folder = tmp_path / "shapes"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(240):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    run, export = tmp_path / "run", tmp_path / "export"
    assert (
        train_main(
            [
                "--data",
                "folder",
                "--data-dir",
                str(folder),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--z-dim",
                "8",
                "--g-width",
                "4",
                "--d-width",
                "4",
                "--out",
                str(run),
                "--encoder-steps",
                "0",
                "--export",
                str(export),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    cal = read_checkpoint_config(export).calibration
    assert cal is not None and cal.num_real == 12  # 5 % of 240 held out by the training
    assert f"calibrated D on {export}" in out
    bare = tmp_path / "bare"
    assert (
        train_main(
            [
                "--resume",
                str(run),
                "--steps",
                "3",
                "--encoder-steps",
                "0",
                "--export",
                str(bare),
                "--no-calibrate",
                "--no-progress",
            ]
        )
        == 0
    )
    assert read_checkpoint_config(bare).calibration is None
    assert "calibrated D" not in capsys.readouterr().out
    latest = run / "checkpoints" / "latest"
    assert read_checkpoint_config(latest).calibration is None
    assert (
        calibrate_main(
            [
                "--checkpoint",
                str(latest),
                "--data",
                "folder",
                "--data-dir",
                str(folder),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--num",
                "100",
                "--quiet",
            ]
        )
        == 0
    )
    assert read_checkpoint_config(latest).calibration.num_real == 12  # type: ignore[union-attr]
    (folder / "extra.png").write_bytes((folder / "0.png").read_bytes())
    assert (
        calibrate_main(
            [
                "--checkpoint",
                str(latest),
                "--data",
                "folder",
                "--data-dir",
                str(folder),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "not the ones" in capsys.readouterr().err
    assert os.path.isfile(latest / "config.json")
