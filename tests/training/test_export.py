"""training.export: the run's checkpoint folder (latest, best, pruning) and export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gan.checkpoint import CheckpointError, build_config, load_checkpoint, read_config
from gan.models import ModelConfig, build_models
from tests.conftest import make_checkpoint
from training.export import CheckpointManager, export_checkpoint


def test_manager_keeps_last_n_and_best(tmp_path: Path) -> None:
    cfg = ModelConfig(z_dim=8, g_width=8, d_width=8)
    g, d = build_models(cfg, seed=0)
    mgr = CheckpointManager(tmp_path, keep_last=2)
    for step, metric in [(1, 5.0), (2, 3.0), (3, 4.0), (4, 6.0)]:
        conf = build_config(
            cfg, step=step, extra={"training_metric": {"name": "fid", "value": metric}}
        )
        mgr.save(step, g, d, conf, {"step": step}, metric=metric)
    assert [p.name for p in mgr.step_dirs()] == ["step-00000003", "step-00000004"]
    assert read_config(mgr.root / "best")["step"] == 2
    assert read_config(mgr.root / "latest")["step"] == 4
    assert not [p for p in os.listdir(mgr.root) if p.startswith(".")]


def test_export_copies_a_valid_checkpoint_without_training_state(tmp_path: Path) -> None:
    src = make_checkpoint(tmp_path / "src")
    (src / "train_state.json").write_text("{}")
    out = export_checkpoint(src, tmp_path / "out")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "generator.safetensors", "discriminator.safetensors"]
    )
    assert load_checkpoint(out).step == load_checkpoint(src).step
    (src / "generator.safetensors").write_bytes(b"broken")
    with pytest.raises(CheckpointError):
        export_checkpoint(src, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()
