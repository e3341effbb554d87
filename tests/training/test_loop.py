from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig
from training.cli import sample_main, train_main
from training.config import TrainConfig, TrainingError
from training.data import ImageData
from training.loop import Trainer, resume_trainer

TINY = ModelConfig(z_dim=8, g_width=8, d_width=8)


def _data(n: int = 256) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return ImageData(images, None, {"name": "random-test"})


def _cfg(**kw) -> TrainConfig:  # type: ignore[no-untyped-def]
    base = dict(
        steps=12,
        batch_size=16,
        seed=5,
        sample_every=1000,
        checkpoint_every=6,
        log_every=3,
        r1_gamma=1.0,
        r1_every=2,
        d_steps=2,
        model=TINY,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    ck = load_checkpoint(path)
    out = {f"g.{k}": v for k, v in ck.generator.state_dict().items()}
    out.update({f"d.{k}": v for k, v in ck.discriminator.state_dict().items()})
    return out


@pytest.mark.parametrize("loss", ["nonsat", "hinge"])
def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path: Path, loss: str) -> None:
    data, held = _data(), _data(32).images
    full = Trainer(_cfg(loss=loss), data, tmp_path / "full", heldout=held, progress=False).fit()

    # "Interrupt" after step 6 by training a run whose config stops there ...
    part = Trainer(_cfg(loss=loss, steps=6), data, tmp_path / "part", heldout=held, progress=False)
    part.fit()
    # ... then resume it from its latest checkpoint to the full length.
    resumed = resume_trainer(
        tmp_path / "part" / "checkpoints" / "latest",
        data,
        tmp_path / "part",
        heldout=held,
        steps=12,
        progress=False,
    )
    assert resumed.step == 6
    end = resumed.fit()

    a, b = _weights(full), _weights(end)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    full_state = load_checkpoint(full, with_train_state=True).train_state
    end_state = load_checkpoint(end, with_train_state=True).train_state
    for k in full_state["g"]:
        assert torch.equal(full_state["g"][k], end_state["g"][k])


def test_same_seed_same_weights_and_different_seed_differs(tmp_path: Path) -> None:
    data = _data()
    a = _weights(Trainer(_cfg(steps=4), data, tmp_path / "a", progress=False).fit())
    b = _weights(Trainer(_cfg(steps=4), data, tmp_path / "b", progress=False).fit())
    c = _weights(Trainer(_cfg(steps=4, seed=6), data, tmp_path / "c", progress=False).fit())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_run_folder_is_self_describing(tmp_path: Path) -> None:
    held = _data(40).images
    out = tmp_path / "run"
    last = Trainer(
        _cfg(steps=6, sample_every=3),
        _data(),
        out,
        heldout=held,
        progress=False,
        evaluator=lambda imgs: float(imgs.float().mean()),
    ).fit()
    assert (out / "run.json").is_file() and (out / "loss_curve.png").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step-00000003.png",
        "step-00000006.png",
    ]
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert any("d_loss" in r and "it_s" in r for r in lines)
    conf = json.loads((last / "config.json").read_text())
    assert conf["step"] == 6 and conf["training"]["loss"] == "nonsat"
    rs = conf["real_scores"]
    assert rs["num_images"] == 40 and len(rs["quantiles"]) == len(rs["levels"]) == 1001
    assert rs["quantiles"] == sorted(rs["quantiles"])
    assert "fid_quick" in conf["metrics"]
    assert (out / "checkpoints" / "best" / "config.json").is_file()


def test_dataset_shape_mismatch_and_too_small_dataset(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="model expects"):
        Trainer(
            _cfg(model=ModelConfig(resolution=32, z_dim=8, g_width=8, d_width=8)), _data(), tmp_path
        )
    with pytest.raises(TrainingError, match="fewer than --batch-size"):
        Trainer(_cfg(batch_size=64), _data(10), tmp_path)


def test_gan_train_then_gan_sample_end_to_end(tmp_path: Path, mnist_dir: Path) -> None:
    run, export = tmp_path / "run", tmp_path / "export"
    rc = train_main(
        [
            "--data",
            "mnist",
            "--data-dir",
            str(mnist_dir),
            "--limit",
            "512",
            "--steps",
            "6",
            "--batch-size",
            "16",
            "--z-dim",
            "8",
            "--g-width",
            "8",
            "--d-width",
            "8",
            "--checkpoint-every",
            "3",
            "--out",
            str(run),
            "--export",
            str(export),
            "--encoder-steps",
            "20",
            "--no-progress",
            "--no-eval",
        ]
    )
    assert rc == 0
    ck = load_checkpoint(export)
    assert ck.step == 6 and ck.config.dataset["name"] == "mnist"
    assert ck.encoder is not None and ck.config.raw["encoder"]["steps"] == 20
    assert ck.config.real_scores is not None and ck.config.real_scores.num_images == 10000
    assert not (export / "train_state.safetensors").exists()

    npy1, npy2 = tmp_path / "a.npy", tmp_path / "b.npy"
    assert (
        sample_main(["--checkpoint", str(export), "--num", "5", "--seed", "3", "--out", str(npy1)])
        == 0
    )
    assert (
        sample_main(["--checkpoint", str(export), "--num", "5", "--seed", "3", "--out", str(npy2)])
        == 0
    )
    arr = np.load(npy1, allow_pickle=False)
    assert arr.shape == (5, 28, 28) and arr.dtype == np.uint8
    assert npy1.read_bytes() == npy2.read_bytes()
    png = tmp_path / "grid.png"
    assert sample_main(["--checkpoint", str(export), "--num", "4", "--out", str(png)]) == 0
    assert Image.open(png).size == (2 + 2 * 30, 2 + 2 * 30)
    folder = tmp_path / "imgs"
    assert sample_main(["--checkpoint", str(export), "--num", "3", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["00000.png", "00001.png", "00002.png"]

    # Resume the run for two more steps from its folder.
    assert (
        train_main(
            [
                "--data",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--limit",
                "512",
                "--resume",
                str(run),
                "--steps",
                "8",
                "--no-progress",
                "--no-eval",
            ]
        )
        == 0
    )
    assert load_checkpoint(run / "checkpoints" / "latest").step == 8
    # A run that stopped on its time budget continues when resumed with a larger one.
    state = load_checkpoint(run / "checkpoints" / "latest", with_train_state=True).train_state
    assert state["train_config"]["time_budget_s"] == 0.0
    assert (
        train_main(
            [
                "--data",
                "mnist",
                "--data-dir",
                str(mnist_dir),
                "--limit",
                "512",
                "--resume",
                str(run),
                "--steps",
                "9",
                "--time-budget",
                "3600",
                "--no-progress",
                "--no-eval",
            ]
        )
        == 0
    )
    state = load_checkpoint(run / "checkpoints" / "latest", with_train_state=True).train_state
    assert state["step"] == 9 and state["train_config"]["time_budget_s"] == 3600


def test_cli_user_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        train_main(
            [
                "--data",
                "folder",
                "--data-dir",
                str(tmp_path / "missing"),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert (
        sample_main(["--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "x.npy")]) == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert sample_main(["--checkpoint", str(tmp_path), "--out", str(tmp_path / "x.jpg")]) == 2
    assert "use a .npy file" in capsys.readouterr().err
    assert train_main(["--resume", str(tmp_path), "--no-progress"]) == 2
    assert "neither a checkpoint nor a run folder" in capsys.readouterr().err


def test_gan_sample_matches_the_api_for_the_same_seed(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    import base64
    import io

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    out = tmp_path / "s.npy"
    assert (
        sample_main(
            ["--checkpoint", str(tiny_checkpoint), "--num", "3", "--seed", "41", "--out", str(out)]
        )
        == 0
    )
    cli = np.load(out, allow_pickle=False)
    with TestClient(create_app(Settings(checkpoint=tiny_checkpoint))) as client:
        r = client.post("/generate", json={"n": 3, "seed": 41, "format": "json"})
        assert r.status_code == 200, r.text
        images = r.json()["images"]
    api = np.stack(
        [np.asarray(Image.open(io.BytesIO(base64.b64decode(i["png_base64"])))) for i in images]
    )
    assert api.shape == cli.shape
    assert np.array_equal(api, cli)


def test_ema_without_warmup_is_a_plain_moving_average(tmp_path: Path) -> None:
    """--ema-warmup 0 (accepted by validation) used to divide by zero at the first step; it
    means a constant decay from step 0: ema = decay * init + (1 - decay) * G after one step."""
    cfg = _cfg(steps=1, ema_warmup=0, ema_decay=0.9, r1_gamma=0.0, d_steps=1)
    t = Trainer(cfg, _data(), tmp_path / "run", progress=False)
    init = {k: v.clone() for k, v in t.g.state_dict().items()}
    t.train_step()
    assert t.g_ema is not None
    after = t.g.state_dict()
    for k, v in t.g_ema.state_dict().items():
        if v.dtype.is_floating_point and "running" not in k:
            torch.testing.assert_close(v, 0.9 * init[k] + 0.1 * after[k])
