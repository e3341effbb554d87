from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gan.calibration import RealScores
from gan.checkpoint import (
    CheckpointError,
    build_config,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from gan.dataset_info import portable_dataset_info
from gan.models import ModelConfig, build_models
from tests.conftest import make_checkpoint


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
    state = {
        "step": 5,
        "rng": torch.get_rng_state(),
        "betas": (0.5, 0.9),
        "nested": [{"t": torch.ones(2)}],
    }
    save_checkpoint(tmp_path / "c", g, d, build_config(cfg, step=5), train_state=state)
    back = load_checkpoint(tmp_path / "c", with_train_state=True).train_state
    assert back["step"] == 5 and back["betas"] == (0.5, 0.9)
    assert torch.equal(back["rng"], state["rng"]) and torch.equal(
        back["nested"][0]["t"], torch.ones(2)
    )


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
    import gan.checkpoint as mod

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mod, "save_file", boom)
    with pytest.raises(CheckpointError) as info:
        save_checkpoint(tiny_checkpoint, ck.generator, ck.discriminator, ck.config.raw)
    message = str(info.value)
    assert message.startswith(f"cannot write checkpoint {tiny_checkpoint}: no space left")
    assert "it needs about" in message and "\n" not in message
    assert {f.name: f.read_bytes() for f in tiny_checkpoint.iterdir()} == before
    assert not [p for p in tiny_checkpoint.parent.iterdir() if p.name.startswith(".")]
    load_checkpoint(tiny_checkpoint)


def test_tiny_checkpoint_helper_loads(tmp_path: Path) -> None:
    ck = load_checkpoint(make_checkpoint(tmp_path / "t", resolution=64, channels=3))
    assert ck.model_config.resolution == 64 and not ck.generator.training


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        ([1, 2], "must be an object or null"),
        ({"levels": [0.0, 1.0]}, "needs the lists"),
        ({"levels": [0.0, 1.0], "quantiles": [0.0, float("nan")]}, "finite numbers"),
        ({"levels": [0.0, 0.0, 1.0], "quantiles": [0, 1, 2]}, "strictly increasing"),
        ({"levels": [0.1, 1.0], "quantiles": [0, 1]}, "from 0.0 to 1.0"),
        ({"levels": [0.0, 1.0], "quantiles": [0, 1], "num_images": 0}, "positive integer"),
    ],
)
def test_real_scores_validation(data: object, phrase: str) -> None:
    with pytest.raises(CheckpointError, match=phrase) as info:
        RealScores.from_config(data, "/x/config.json")
    assert str(info.value).startswith("/x/config.json: 'real_scores'")


def test_percentile_interpolation_and_ends() -> None:
    rs = RealScores.from_config(
        {"levels": [0.0, 0.5, 1.0], "quantiles": [-1.0, 1.0, 1.0], "num_images": 2, "source": "x"},
        "config.json",
    )
    assert rs is not None
    assert rs.percentile(-5.0) == 0.0
    assert rs.percentile(-1.0) == 0.0  # nobody scored strictly lower than the minimum
    assert rs.percentile(0.0) == pytest.approx(25.0)
    assert rs.percentile(1.0) == pytest.approx(50.0)  # a run of equal quantiles: jump across it
    assert rs.percentile(1.0001) == 100.0


def test_copies_are_hard_links_where_possible(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from gan.checkpoint import copy_checkpoint, update_config

    copy = copy_checkpoint(tiny_checkpoint, tmp_path / "copy")
    for name in ("config.json", "generator.safetensors", "discriminator.safetensors"):
        assert os.path.samefile(copy / name, tiny_checkpoint / name)
    # Updating one copy's config (an atomic rename) leaves the other untouched.
    before = (tiny_checkpoint / "config.json").read_bytes()
    update_config(copy, {"metrics": {"fid": 1.0}})
    assert (tiny_checkpoint / "config.json").read_bytes() == before
    assert load_checkpoint(copy).config.metrics["fid"] == 1.0


# A dataset record as training/data.py writes it for an image folder on the trainer's machine.
TRAINER_RECORD = {
    "name": "folder",
    "path": "/home/alice/private/photos",
    "split": "train",
    "num_images": 950,
    "num_files": 1002,
    "skipped": ["holiday/IMG_0001.png"],
    "fingerprint": "9f2c",
    "resolution": 32,
    "channels": 3,
    "classes": ["cats", "dogs"],
    "preprocess": {"version": 1, "function": "gan.preprocess.to_model_pixels"},
    "cache": "/home/alice/private/photos/.gan-cache/folder-9f2c.safetensors",
    "cache_hit": False,
    "heldout_source": "50 images held out of the folder (seeded split)",
    "extra": {"source_dir": "/mnt/x", "note": "C:\\Users\\alice", "ok": ["a", "/abs/b"]},
}
PORTABLE_RECORD = {
    "name": "folder",
    "folder": "photos",
    "split": "train",
    "num_images": 950,
    "num_files": 1002,
    "fingerprint": "9f2c",
    "resolution": 32,
    "channels": 3,
    "classes": ["cats", "dogs"],
    "preprocess": {"version": 1, "function": "gan.preprocess.to_model_pixels"},
    "heldout_source": "50 images held out of the folder (seeded split)",
    "extra": {"ok": ["a"]},
}


def test_new_checkpoints_record_the_data_not_the_trainers_paths() -> None:
    assert portable_dataset_info(TRAINER_RECORD) == PORTABLE_RECORD
    cfg = build_config(ModelConfig(resolution=32, channels=3), step=1, dataset=TRAINER_RECORD)
    assert cfg["dataset"] == PORTABLE_RECORD
    assert "/home/alice" not in json.dumps(cfg) and "private" not in json.dumps(cfg)
    assert portable_dataset_info({"name": "mnist", "path": "/"}) == {"name": "mnist"}


def test_bundled_checkpoints_record_no_machine_paths() -> None:
    """Issue 19: the bundled config.json recorded the trainer's dataset path."""
    root = Path(__file__).resolve().parents[2] / "checkpoints"
    for config in sorted(root.glob("*/config.json")):
        dataset = json.loads(config.read_text())["dataset"]
        assert dataset == portable_dataset_info(dataset), config
        assert "/work/" not in json.dumps(dataset) and "/home/" not in json.dumps(dataset), config
