"""gan.runs: a run folder (or its checkpoints/ folder) resolves to its best, else latest."""

from __future__ import annotations

from pathlib import Path

import pytest

from gan.checkpoint import CheckpointError, read_checkpoint_config
from gan.runs import resolve_checkpoint


def _fake(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_a_checkpoint_resolves_to_itself(tmp_path: Path) -> None:
    ckpt = _fake(tmp_path / "ck")
    assert resolve_checkpoint(ckpt) == (ckpt, None)
    assert resolve_checkpoint(tmp_path / "missing") == (tmp_path / "missing", None)


@pytest.mark.parametrize("inner", ["checkpoints", ""])
def test_run_folders_prefer_best_then_latest(tmp_path: Path, inner: str) -> None:
    run = tmp_path / "run"
    folder = run / inner if inner else run
    latest = _fake(folder / "latest")
    path, note = resolve_checkpoint(run)
    assert path == latest and note is not None and "no best yet" in note
    best = _fake(folder / "best")
    path, note = resolve_checkpoint(run)
    assert path == best and note is not None and "best by its metric" in note
    if inner:  # RUN/checkpoints itself
        assert resolve_checkpoint(run / "checkpoints")[0] == best


def test_missing_config_names_the_newest_step(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / "step-00000100").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-00000200").mkdir()
    with pytest.raises(CheckpointError, match=r"newest step checkpoint is .*step-00000200"):
        read_checkpoint_config(tmp_path)
