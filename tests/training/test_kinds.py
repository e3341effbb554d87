"""gan-train --mode ae (vae and plain) and --mode ebm: short runs at 28 px grayscale and 32 px
RGB, exact resume as for GANs, the options validated, and gan-train / gan-sample / gan-eval on
each kind from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig
from gan.samplers import parse_options
from gan.samplers.dispatch import Models, sample
from training.cli import eval_main, sample_main, train_main
from training.config import TrainConfig, TrainingError
from training.data import ImageData
from training.loop import resume_trainer, trainer_for

EBM = {"mode": "ebm", "ebm_steps": 3, "ebm_sample_steps": 4, "ebm_buffer_size": 40}
MODES = {"vae": {"mode": "ae"}, "ae": {"mode": "ae", "ae_kind": "plain"}, "ebm": EBM}


def _data(n: int, resolution: int = 28, channels: int = 1) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    shape = (n, channels, resolution, resolution)
    return ImageData(
        torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8),
        None,
        {"name": "random-test"},
    )


def _cfg(resolution: int = 28, channels: int = 1, **kw: Any) -> TrainConfig:
    model = ModelConfig(resolution=resolution, channels=channels, z_dim=8, g_width=4, d_width=4)
    base: dict[str, Any] = dict(
        steps=6,
        batch_size=8,
        seed=3,
        sample_every=3,
        checkpoint_every=3,
        log_every=2,
        eval_samples=4,
        model=model,
    )
    base.update(kw)
    return TrainConfig(**base)


def _fit(cfg: TrainConfig, data: ImageData, out: Path, **kw: Any) -> Path:
    return trainer_for(cfg)(cfg, data, out, progress=False, **kw).fit()


@pytest.mark.parametrize("kind", ["vae", "ae", "ebm"])
@pytest.mark.parametrize(("resolution", "channels"), [(28, 1), (32, 3)])
def test_a_short_run_of_each_kind_writes_a_checkpoint_of_that_kind(
    tmp_path: Path, kind: str, resolution: int, channels: int
) -> None:
    data = _data(48, resolution, channels)
    out = tmp_path / "run"
    last = _fit(
        _cfg(resolution, channels, **MODES[kind]),
        data,
        out,
        heldout=data.images[:16],
        evaluator=lambda images: float(images.float().mean()),
    )
    ck = load_checkpoint(last)
    assert ck.kind == kind and ck.step == 6
    assert (ck.discriminator is not None) == (kind == "ebm")
    assert (ck.config.real_scores is not None) == (kind == "ebm")
    assert "fid_quick" in ck.config.metrics
    if kind == "ebm":
        assert ck.config.ebm is not None and ck.config.ebm.steps == 4
    assert (out / "samples" / "step-00000006.png").is_file() and (out / "loss_curve.png").is_file()
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    loss_key = "d_loss" if kind == "ebm" else "recon_loss"
    assert any(loss_key in r for r in lines)
    images = sample(Models.of(ck), parse_options("plain"), seed=0, n=2).images
    assert images.shape == (2, channels, resolution, resolution)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    ck = load_checkpoint(path, with_train_state=True)
    out: dict[str, torch.Tensor] = {}
    for name in ("generator", "discriminator", "encoder"):
        module = getattr(ck, name)
        if module is not None:
            out.update({f"{name}.{k}": v for k, v in module.state_dict().items()})
    state = ck.train_state
    for key in ("g", "d", "encoder"):
        if key in state:
            out.update({f"state.{key}.{k}": v for k, v in state[key].items()})
    if "buffer" in state:
        out["buffer"] = state["buffer"]
    return out


@pytest.mark.parametrize("kind", ["vae", "ebm"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path: Path, kind: str) -> None:
    data, held = _data(48), _data(16).images
    cfg = dict(MODES[kind], steps=6, checkpoint_every=3)
    full = _fit(_cfg(**cfg), data, tmp_path / "full", heldout=held)
    _fit(_cfg(**{**cfg, "steps": 3}), data, tmp_path / "part", heldout=held)
    resumed = resume_trainer(
        tmp_path / "part" / "checkpoints" / "latest",
        data,
        tmp_path / "part",
        heldout=held,
        steps=6,
        progress=False,
    )
    assert resumed.step == 3 and type(resumed.objective).__name__ == (
        "EBMObjective" if kind == "ebm" else "AEObjective"
    )
    end = resumed.fit()
    a, b = _tensors(full), _tensors(end)
    assert a.keys() == b.keys() and len(a) > 0
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_mode_options_are_validated() -> None:
    cases = [
        ({"mode": "vq"}, "--mode must be one of gan, ae, ebm"),
        ({"mode": "ae", "conditional": True}, "drop --conditional and --augment"),
        (
            {"mode": "ebm", "model": ModelConfig(resolution=32, arch="classic")},
            "needs --arch dcgan",
        ),
        ({"mode": "ebm", "ebm_buffer": 1.5}, "--ebm-buffer must be in"),
        ({"mode": "ebm", "ebm_buffer_size": 8, "batch_size": 16}, "smaller than --batch-size"),
        ({"mode": "ebm", "loss": "hinge", "r1_gamma": 1.0}, "--loss, --r1-gamma only apply to"),
        ({"mode": "ae", "d_steps": 2}, "--d-steps only apply to --mode gan"),
        ({"ebm_steps": 0}, "--ebm-steps must be an integer >= 1"),
        ({"ebm_step_size": 0.0}, "--ebm-step-size must be a positive number"),
    ]
    for options, message in cases:
        with pytest.raises(TrainingError, match=message):
            TrainConfig(**options)
    assert (
        TrainConfig(mode="ae").kind == "vae"
        and TrainConfig(mode="ae", ae_kind="plain").kind == "ae"
    )
    assert TrainConfig.from_dict({"steps": 3}).mode == "gan"  # runs saved before --mode


@pytest.mark.parametrize("kind", ["vae", "ae", "ebm"])
def test_gan_train_sample_and_eval_on_each_kind(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    run, export = tmp_path / "run", tmp_path / "export"
    extra = {
        "vae": ["--mode", "ae"],
        "ae": ["--mode", "ae", "--ae-kind", "plain"],
        "ebm": [
            "--mode",
            "ebm",
            "--ebm-steps",
            "3",
            "--ebm-sample-steps",
            "2",
            "--ebm-buffer-size",
            "64",
        ],
    }[kind]
    assert (
        train_main(
            [
                "--data",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--limit",
                "256",
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
                "--no-eval",
                *extra,
            ]
        )
        == 0
    )
    assert load_checkpoint(export).kind == kind
    assert not (export / "train_state.safetensors").exists()
    out = tmp_path / "s.npy"
    assert (
        sample_main(["--checkpoint", str(export), "--num", "3", "--seed", "2", "--out", str(out)])
        == 0
    )
    assert np.load(out).shape == (3, 28, 28)
    assert (
        eval_main(
            [
                "--checkpoint",
                str(export),
                "--num",
                "20",
                "--quiet",
                "--json",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["sampling"]["method"] == "plain" and "fid" in result["metrics"]
    backwards = result["sampling"]["cost_per_image"]["backwards"]
    assert backwards == (2 if kind == "ebm" else 0)
    capsys.readouterr()
    assert eval_main(["--checkpoint", str(export), "--num", "20", "--method", "langevin"]) == 2
    assert "method 'langevin' needs" in capsys.readouterr().err
    assert sample_main(["--checkpoint", str(export), "--method", "mh", "--out", str(out)]) == 2
    assert "method 'mh' needs" in capsys.readouterr().err
