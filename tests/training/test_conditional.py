"""gan-train --conditional: labelled data in, class-conditional checkpoints out."""

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
from training.data import ImageData, load_dataset
from training.loop import Trainer, resume_trainer


def _labelled(n: int, resolution: int, channels: int, classes: int) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (n, channels, resolution, resolution), generator=gen, dtype=torch.uint8
    )
    labels = torch.arange(n) % classes
    return ImageData(images, labels, {"name": "random-test"}, [f"c{i}" for i in range(classes)])


@pytest.mark.parametrize(
    ("resolution", "channels"), [(28, 1), (28, 3), (32, 1), (32, 3), (64, 1), (64, 3)]
)
def test_short_conditional_run_at_every_size(
    tmp_path: Path, resolution: int, channels: int
) -> None:
    data = _labelled(32, resolution, channels, 3)
    cfg = TrainConfig(
        steps=2,
        batch_size=8,
        conditional=True,
        checkpoint_every=2,
        sample_every=2,
        log_every=1,
        model=ModelConfig(resolution=resolution, channels=channels, z_dim=8, g_width=4, d_width=4),
    )
    trainer = Trainer(
        cfg, data, tmp_path / "run", heldout=_labelled(9, resolution, channels, 3), progress=False
    )
    ck = load_checkpoint(trainer.fit())
    assert ck.model_config.num_classes == 3 and ck.config.classes == ("c0", "c1", "c2")
    assert ck.config.real_scores is not None and ck.config.real_scores.num_images == 9
    grid = Image.open(tmp_path / "run" / "samples" / "step-00000002.png")
    columns = (grid.width - 2) // (resolution + 2)
    rows = (grid.height - 2) // (resolution + 2)
    # one class per column (a multiple of the 3 classes), near-square: 9 x 8
    assert columns % 3 == 0 and (columns, rows) == (9, 8)


def test_conditional_resume_is_exact(tmp_path: Path) -> None:
    data = _labelled(64, 28, 1, 4)

    def cfg(steps: int) -> TrainConfig:
        return TrainConfig(
            steps=steps,
            batch_size=8,
            conditional=True,
            checkpoint_every=3,
            sample_every=1000,
            log_every=3,
            r1_gamma=1.0,
            r1_every=2,
            seed=2,
            model=ModelConfig(z_dim=8, g_width=4, d_width=4),
        )

    full = load_checkpoint(Trainer(cfg(6), data, tmp_path / "full", progress=False).fit())
    Trainer(cfg(3), data, tmp_path / "part", progress=False).fit()
    end = resume_trainer(
        tmp_path / "part" / "checkpoints" / "latest",
        data,
        tmp_path / "part",
        steps=6,
        progress=False,
    ).fit()
    resumed = load_checkpoint(end)
    for a, b in ((full.generator, resumed.generator), (full.discriminator, resumed.discriminator)):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(va, vb), k


def test_conditional_needs_labels(tmp_path: Path) -> None:
    data = ImageData(torch.zeros(16, 1, 28, 28, dtype=torch.uint8), None, {"name": "x"})
    cfg = TrainConfig(
        steps=1, batch_size=8, conditional=True, model=ModelConfig(z_dim=8, g_width=4, d_width=4)
    )
    with pytest.raises(TrainingError, match="one sub-folder per class"):
        Trainer(cfg, data, tmp_path / "r", progress=False)


def _write_folder(root: Path, classes: dict[str, int]) -> None:
    for name, value in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(10):
            arr = np.full((20, 20, 3), value, np.uint8)
            arr[i, :] = 255 - value
            Image.fromarray(arr).save(root / name / f"{i}.png")


def test_folder_classes_follow_the_imagefolder_convention(tmp_path: Path) -> None:
    _write_folder(tmp_path / "shapes", {"discs": 40, "squares": 200})
    data = load_dataset(
        "folder",
        tmp_path / "shapes",
        resolution=28,
        channels=3,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert data.classes == ["discs", "squares"]
    assert data.labels is not None and data.labels.tolist() == [0] * 10 + [1] * 10
    assert int(data.images[0].median()) == 40 and int(data.images[10].median()) == 200
    # One sub-folder is no class structure: --conditional explains the convention.
    _write_folder(tmp_path / "one", {"only": 100})
    single = load_dataset(
        "folder",
        tmp_path / "one",
        resolution=28,
        channels=3,
        cache_dir=tmp_path / "cache",
        progress=False,
    )
    assert single.classes == [] and single.labels is None


def test_cli_conditional_folder_run_and_labelled_sampling(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_folder(tmp_path / "shapes", {"discs": 40, "squares": 200})
    run, export = tmp_path / "run", tmp_path / "export"
    assert (
        train_main(
            [
                "--data",
                "folder",
                "--data-dir",
                str(tmp_path / "shapes"),
                "--cache-dir",
                str(tmp_path / "cache"),
                "--conditional",
                "--resolution",
                "28",
                "--channels",
                "3",
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
    ck = load_checkpoint(export)
    assert ck.config.classes == ("discs", "squares")
    assert json.loads((run / "run.json").read_text())["train_config"]["conditional"] is True
    out = tmp_path / "squares.npy"
    assert (
        sample_main(
            ["--checkpoint", str(export), "--num", "4", "--label", "squares", "--out", str(out)]
        )
        == 0
    )
    by_index = tmp_path / "one.npy"
    assert (
        sample_main(
            ["--checkpoint", str(export), "--num", "4", "--label", "1", "--out", str(by_index)]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(out), np.load(by_index))
    capsys.readouterr()
    assert (
        sample_main(
            ["--checkpoint", str(export), "--label", "circles", "--out", str(tmp_path / "x.npy")]
        )
        == 2
    )
    assert "unknown class 'circles'" in capsys.readouterr().err
    # A folder without class sub-folders: one error line that explains the convention.
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(10):
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(flat / f"{i}.png")
    assert (
        train_main(
            [
                "--data",
                "folder",
                "--data-dir",
                str(flat),
                "--conditional",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--steps",
                "1",
                "--batch-size",
                "4",
                "--out",
                str(tmp_path / "r2"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "ImageFolder convention" in capsys.readouterr().err


def test_unconditional_models_refuse_labels(
    tiny_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        sample_main(
            ["--checkpoint", str(tiny_checkpoint), "--label", "3", "--out", str(tmp_path / "x.npy")]
        )
        == 2
    )
    assert "unconditional" in capsys.readouterr().err


def test_folder_runs_pick_best_by_the_random_cnn_fid(tmp_path: Path) -> None:
    """Issue 19: a folder run has a quality number, FID in training.metrics.anyfeatures'
    feature space, logged at every evaluation, and `best` is the checkpoint it ranks first."""
    import json

    from training.metrics.anyfeatures import FolderQuickFID

    _write_folder(tmp_path / "shapes", {"discs": 30, "squares": 30})
    run = tmp_path / "run"
    args = [
        "--data", "folder", "--data-dir", str(tmp_path / "shapes"),
        "--cache-dir", str(tmp_path / "cache"), "--resolution", "28", "--channels", "3",
        "--steps", "6", "--batch-size", "8", "--z-dim", "8", "--g-width", "4", "--d-width", "4",
        "--eval-every", "2", "--checkpoint-every", "2", "--eval-samples", "64",
        "--out", str(run), "--encoder-steps", "0", "--no-progress",
    ]  # fmt: skip
    assert train_main(args) == 0
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    scored = [
        (r["fid_anyfeatures_quick"], r["step"]) for r in records if "fid_anyfeatures_quick" in r
    ]
    assert len(scored) >= 3 and all(v > 0 for v, _ in scored)
    best = load_checkpoint(run / "checkpoints" / "best")
    assert best.step == min(scored)[1]
    # The metric itself: a set scores near 0 against itself, far from noise.
    from training.data import load_training_data

    data, _ = load_training_data(
        "folder", tmp_path / "shapes", 28, 3, cache_dir=tmp_path / "cache", seed=0, progress=False
    )
    quick = FolderQuickFID(data.images)
    noise = torch.randint(0, 256, (60, 3, 28, 28), dtype=torch.uint8)
    from training.metrics.anyfeatures import as_uint8

    assert quick(as_uint8(data.images)) < 0.2 * quick(noise)


def test_gan_eval_measures_a_folder_run_beside_real_vs_real(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 19: gan-eval reports FID, KID, precision/recall in the random-CNN space beside the
    real-vs-real baseline, and the memorisation check, for a checkpoint trained on a folder."""
    import json

    from training.cli import eval_main

    rng = np.random.default_rng(0)
    for name in ("discs", "squares"):  # 100 images: 5 held out
        (tmp_path / "shapes" / name).mkdir(parents=True)
        for i in range(50):
            arr = rng.integers(0, 60, (20, 20, 3), dtype=np.uint8)
            arr[4:16, 4:16] = 200 if name == "squares" else 90
            Image.fromarray(arr).save(tmp_path / "shapes" / name / f"{i}.png")
    run, export = tmp_path / "run", tmp_path / "export"
    args = [
        "--data", "folder", "--data-dir", str(tmp_path / "shapes"),
        "--resolution", "28", "--channels", "3", "--steps", "3", "--batch-size", "8",
        "--z-dim", "8", "--g-width", "4", "--d-width", "4", "--out", str(run),
        "--encoder-steps", "0", "--export", str(export), "--no-progress",
    ]  # fmt: skip
    assert train_main(args) == 0
    capsys.readouterr()
    out = tmp_path / "eval.json"
    argv = ["--checkpoint", str(export), "--data-dir", str(tmp_path / "shapes"), "--num", "64"]
    assert eval_main([*argv, "--json", str(out), "--memorisation", "32"]) == 0
    text = capsys.readouterr().out
    assert "real vs real" in text and "FID" in text and "memorisation (pixels)" in text
    result = json.loads(out.read_text())
    assert result["feature_space"].startswith("random-cnn-")
    assert result["num_heldout"] >= 2 and result["num_compared"] == min(64, result["num_heldout"])
    # 3 steps of training draw noise: far from the real images, which are close to each other.
    assert result["metrics"]["fid"] > 2 * result["real_vs_real"]["fid"]
    assert result["metrics"]["precision"] <= result["real_vs_real"]["precision"]
    mem = result["memorisation"]
    assert mem["num_generated"] == 32 and mem["pixels"]["ratio"] > 0
    assert Path(mem["closest_pairs_png"]).is_file()
    # Without the folder, or with another folder: one error line, exit 2.
    assert eval_main(["--checkpoint", str(export)]) == 2
    assert "--data-dir" in capsys.readouterr().err
    _write_folder(tmp_path / "other", {"discs": 20, "squares": 20})
    assert eval_main(["--checkpoint", str(export), "--data-dir", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fingerprint" in err
