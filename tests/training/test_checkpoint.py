from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import make_tiny_checkpoint
from training.checkpoint import (
    CheckpointError,
    CheckpointManager,
    build_config,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from training.models import ModelConfig, build_models


def test_round_trip_gives_identical_tensors(tmp_path: Path) -> None:
    cfg = ModelConfig(resolution=32, channels=3, z_dim=8, g_width=8, d_width=8)
    g, d = build_models(cfg, seed=3)
    save_checkpoint(tmp_path / "c", g, d, build_config(cfg, step=7, seed=3, dataset={"name": "x"}))
    ck = load_checkpoint(tmp_path / "c")
    assert ck.model_config == cfg and ck.step == 7
    for a, b in ((g, ck.generator), (d, ck.discriminator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    conf = json.loads((tmp_path / "c" / "config.json").read_text())
    assert conf["format_version"] == 1 and conf["normalisation"]["range"] == [-1.0, 1.0]
    assert len(conf["checkpoint_hash"]) == 16 and ck.model_id.endswith(conf["checkpoint_hash"][:8])


def test_no_pickle_in_a_checkpoint(tiny_checkpoint: Path) -> None:
    for f in tiny_checkpoint.iterdir():
        assert f.suffix in (".json", ".safetensors"), f


def test_training_state_round_trip(tmp_path: Path) -> None:
    cfg = ModelConfig(z_dim=8, g_width=8, d_width=8)
    g, d = build_models(cfg, seed=0)
    state = {"step": 5, "rng": torch.get_rng_state(), "betas": (0.5, 0.9), "nested": [{"t": torch.ones(2)}]}
    save_checkpoint(tmp_path / "c", g, d, build_config(cfg, step=5), train_state=state)
    back = load_checkpoint(tmp_path / "c", with_train_state=True).train_state
    assert back["step"] == 5 and back["betas"] == (0.5, 0.9)
    assert torch.equal(back["rng"], state["rng"]) and torch.equal(back["nested"][0]["t"], torch.ones(2))


def test_missing_directory_and_files(tmp_path: Path, tiny_checkpoint: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    (tiny_checkpoint / "discriminator.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"discriminator\.safetensors: missing"):
        load_checkpoint(tiny_checkpoint)


def test_corrupted_weights_are_refused(tiny_checkpoint: Path) -> None:
    f = tiny_checkpoint / "generator.safetensors"
    data = bytearray(f.read_bytes())
    data[-5] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tiny_checkpoint)
    # Without hash verification the safetensors parser still validates structure.
    f.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(tiny_checkpoint, verify_hash=False)


def test_mismatched_architecture_is_refused(tiny_checkpoint: Path) -> None:
    conf = json.loads((tiny_checkpoint / "config.json").read_text())
    conf["model"]["g_width"] = 16
    (tiny_checkpoint / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(tiny_checkpoint)


def test_nan_weights_are_refused(tiny_checkpoint: Path) -> None:
    f = tiny_checkpoint / "discriminator.safetensors"
    state = load_file(str(f))
    key = next(k for k in state if k.endswith("weight"))
    state[key][...] = float("nan")
    save_file(state, str(f))
    with pytest.raises(CheckpointError, match="NaN"):
        load_checkpoint(tiny_checkpoint, verify_hash=False)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(format="other"), "'format'"),
        (lambda c: c.update(format_version=99), "unsupported format_version"),
        (lambda c: c["model"].update(resolution=48), "invalid 'model'"),
        (lambda c: c.update(step="ten"), "'step'"),
    ],
)
def test_invalid_config_is_refused(tiny_checkpoint: Path, mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    p = tiny_checkpoint / "config.json"
    conf = json.loads(p.read_text())
    mutate(conf)
    p.write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match=message):
        read_config(tiny_checkpoint)


def test_config_that_is_not_json(tiny_checkpoint: Path) -> None:
    (tiny_checkpoint / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tiny_checkpoint)


def test_crash_mid_write_keeps_the_good_checkpoint(tiny_checkpoint: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    before = {f.name: f.read_bytes() for f in tiny_checkpoint.iterdir()}
    ck = load_checkpoint(tiny_checkpoint)
    import training.checkpoint as mod

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(mod, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tiny_checkpoint, ck.generator, ck.discriminator, ck.config)
    assert {f.name: f.read_bytes() for f in tiny_checkpoint.iterdir()} == before
    assert not [p for p in tiny_checkpoint.parent.iterdir() if p.name.startswith(".")]
    load_checkpoint(tiny_checkpoint)


def test_manager_keeps_last_n_and_best(tmp_path: Path) -> None:
    cfg = ModelConfig(z_dim=8, g_width=8, d_width=8)
    g, d = build_models(cfg, seed=0)
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step, metric in [(1, 5.0), (2, 3.0), (3, 4.0), (4, 6.0)]:
        conf = build_config(cfg, step=step, extra={"training_metric": {"name": "fid", "value": metric}})
        mgr.save(step, g, d, conf, {"step": step}, metric=metric)
    assert [p.name for p in mgr.step_dirs()] == ["step-00000003", "step-00000004"]
    assert read_config(mgr.root / "best")["step"] == 2
    assert read_config(mgr.root / "latest")["step"] == 4
    assert not [p for p in os.listdir(mgr.root) if p.startswith(".")]


def test_tiny_checkpoint_helper_loads(tmp_path: Path) -> None:
    ck = load_checkpoint(make_tiny_checkpoint(tmp_path / "t", resolution=64, channels=3))
    assert ck.model_config.resolution == 64 and not ck.generator.training
