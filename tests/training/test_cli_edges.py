"""The rough edges of gan-train a new user hits: resume keeps the data, budgets, interrupts,
bad options, unwritable outputs and full disks (one error line, exit 2, never a traceback)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig
from tests.conftest import ROOT
from training.cli import sample_main, train_main
from training.config import TrainConfig
from training.data import ImageData
from training.loop import Interrupted, Trainer, resume_trainer

TINY = ["--z-dim", "8", "--g-width", "4", "--d-width", "4", "--batch-size", "8"]


def _folder(root: Path, n: int = 24) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((16, 16, 3), (i * 10) % 256, np.uint8)).save(root / f"{i:02d}.png")
    return root


def test_resume_keeps_the_folder_dataset_and_refuses_other_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, run = _folder(tmp_path / "imgs"), tmp_path / "run"
    common = [
        "--cache-dir",
        str(tmp_path / "cache"),
        "--no-progress",
        "--resolution",
        "28",
        "--channels",
        "3",
    ]
    assert (
        train_main(
            [
                "--data",
                "folder",
                "--data-dir",
                str(images),
                "--steps",
                "2",
                "--out",
                str(run),
                *TINY,
                *common,
            ]
        )
        == 0
    )
    # Exactly as the README shows: --resume RUN --steps N, nothing about the data.
    assert (
        train_main(
            [
                "--resume",
                str(run),
                "--steps",
                "3",
                "--no-progress",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    ck = load_checkpoint(run / "checkpoints" / "latest")
    assert ck.step == 3 and ck.config.dataset["name"] == "folder"
    capsys.readouterr()
    assert (
        train_main(["--resume", str(run), "--steps", "4", "--data", "mnist", "--no-progress"]) == 2
    )
    assert "would change its data" in capsys.readouterr().err
    other = _folder(tmp_path / "other", n=30)
    assert (
        train_main(
            [
                "--resume",
                str(run),
                "--steps",
                "4",
                "--data-dir",
                str(other),
                "--no-progress",
                "--cache-dir",
                str(tmp_path / "cache"),
            ]
        )
        == 2
    )
    assert "not the ones the run trained on" in capsys.readouterr().err


def _data() -> ImageData:
    gen = torch.Generator().manual_seed(0)
    return ImageData(
        torch.randint(0, 256, (64, 1, 28, 28), generator=gen, dtype=torch.uint8),
        None,
        {"name": "random-test"},
    )


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        steps=10,
        batch_size=8,
        seed=3,
        checkpoint_every=100,
        sample_every=100,
        log_every=2,
        model=ModelConfig(z_dim=8, g_width=4, d_width=4),
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_a_resumed_time_budget_counts_the_resumed_part(tmp_path: Path) -> None:
    data = _data()
    first = Trainer(_cfg(steps=10**6, time_budget_s=0.3), data, tmp_path / "r", progress=False)
    first.fit()
    done = first.step
    resumed = resume_trainer(
        tmp_path / "r" / "checkpoints" / "latest", data, tmp_path / "r", progress=False
    )
    resumed.fit()
    assert resumed.step > done + 1  # a fresh 0.3 s, not one step and stop
    assert resumed.train_seconds - first.train_seconds >= 0.3


def test_a_stop_request_saves_a_checkpoint_that_resumes_exactly(tmp_path: Path) -> None:
    data = _data()
    full = Trainer(_cfg(), data, tmp_path / "full", progress=False).fit()

    class StopAtFour(Trainer):
        def train_step(self) -> dict[str, float]:
            stats = super().train_step()
            if self.step == 4:
                self.request_stop(signal.SIGINT)
            return stats

    with pytest.raises(Interrupted) as info:
        StopAtFour(_cfg(), data, tmp_path / "part", progress=False).fit()
    assert info.value.signum == signal.SIGINT and load_checkpoint(info.value.checkpoint).step == 4
    assert (tmp_path / "part" / "loss_curve.png").is_file()
    end = resume_trainer(
        tmp_path / "part" / "checkpoints" / "latest", data, tmp_path / "part", progress=False
    ).fit()
    a, b = load_checkpoint(full), load_checkpoint(end)
    for x, y in ((a.generator, b.generator), (a.discriminator, b.discriminator)):
        for (k, va), vb in zip(x.state_dict().items(), y.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_gan_train_saves_and_exits_on_a_signal(
    tmp_path: Path, mnist_dir: Path, sig: int, code: int
) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from training.cli import train_main; sys.exit(train_main())",
            "--data-dir",
            str(mnist_dir),
            "--limit",
            "256",
            "--steps",
            "100000",
            "--log-every",
            "1",
            "--no-eval",
            "--no-progress",
            "--out",
            str(run),
            *TINY,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        log = run / "log.jsonl"
        while not (log.is_file() and log.read_text().count("\n") >= 3):
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stdout and proc.stdout.read()
            )
            time.sleep(0.2)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out
    assert "interrupted: saved" in out and "--resume" in out
    latest = load_checkpoint(run / "checkpoints" / "latest", with_train_state=True)
    assert latest.step >= 3 and (run / "loss_curve.png").is_file()


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--lr-g", "-1"], "--lr-g must be a positive number"),
        (["--time-budget", "-3"], "--time-budget must be a number >= 0"),
        (["--beta2", "1"], "--beta2 must be in [0, 1)"),
        (["--keep-last", "0"], "--keep-last must be an integer >= 1"),
    ],
)
def test_bad_options_are_one_line(
    args: list[str], phrase: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert train_main([*args, "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {err[0][7:]}"] and phrase in err[0]


def test_unwritable_outputs_are_one_line(
    tmp_path: Path, mnist_dir: Path, tiny_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert (
        train_main(
            [
                "--data-dir",
                str(mnist_dir),
                "--limit",
                "64",
                "--steps",
                "1",
                "--no-eval",
                "--no-progress",
                "--out",
                str(blocker / "run"),
                *TINY,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        f"error: cannot write the run folder {blocker / 'run'}"
    )
    assert sample_main(["--checkpoint", str(tiny_checkpoint), "--out", str(blocker / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {blocker / 'x.png'}")


def test_a_full_disk_is_one_line_naming_the_space(
    tmp_path: Path,
    mnist_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import gan.checkpoint

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(gan.checkpoint, "save_file", full)
    run = tmp_path / "run"
    assert (
        train_main(
            [
                "--data-dir",
                str(mnist_dir),
                "--limit",
                "64",
                "--steps",
                "1",
                "--no-eval",
                "--no-progress",
                "--out",
                str(run),
                *TINY,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device" in err[0] and "needs about" in err[0]
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]
    assert json.loads((run / "run.json").read_text())["train_config"]["steps"] == 1
