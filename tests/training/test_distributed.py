"""Training on 2 processes (torch.distributed, gloo, loopback only): training/distributed.py.

* 2 processes at ``batch_size`` B agree with 1 process at 2B after :data:`EQUAL_STEPS` steps,
  within a relative distance :data:`RTOL` of G's and of D's weights (``||a - b|| / ||a||`` over
  all of them), on a configuration where they should: G without BatchNorm (on the CPU each
  process would normalise with its own slice's statistics), no augmentation (each process draws
  its own). Why they agree: both walk the same data order and latents, each process takes its
  half of every global batch, D has no BatchNorm, and DDP averages the two halves' mean
  gradients, which is the global batch's mean gradient; R1 (a double backward through D's
  wrapper) and class labels are on. Only float rounding differs (the all-reduce adds two partial
  sums where one process adds all 2B terms): about 1e-9 in the weights after one step, and the
  GAN's dynamics grow it to a relative 1.6e-3 (G) and 5e-5 (D) after 300 steps at lr 1e-4
  (measured). The tolerance means something: a 1-process run at the per-process batch B ends at
  0.16 (G) and 0.045 (D) from the 2B run, and the test checks that it fails the tolerance.
* Rank 0 alone writes: rank 1 is given a run folder of its own that must never appear.
* A 2-process run stopped halfway and resumed equals the uninterrupted one bit for bit, with
  BatchNorm, augmentation, labels and R1 on (every process's random state restored).
* ``gan-train --nproc 2`` through torchrun: rank 0 writes one log, one set of grids and
  checkpoints; ``--resume`` continues; another process count is refused with one ``error:`` line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import training.objectives.base
from gan.checkpoint import load_train_state
from gan.models import ModelConfig, build_models
from tests.conftest import ROOT
from training.cli import train_main
from training.config import TrainConfig
from training.data import ImageData
from training.distributed import DistributedTrainer, free_port, shutdown
from training.loop import Trainer, resume_trainer

pytestmark = pytest.mark.slow

TINY = ModelConfig(z_dim=8, g_width=4, d_width=4)
#: Steps of the 2-process vs 1-process comparison (at lr 1e-4), and the relative distance of
#: G's and D's weights allowed after them.
EQUAL_STEPS = 300
RTOL = 1e-2
PER_RANK_BATCH = 8


def _data(n: int = 256) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    labels = torch.randint(0, 3, (n,), generator=gen)
    return ImageData(images, labels, {"name": "random-test"}, ["a", "b", "c"])


def _cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = dict(
        steps=24,
        batch_size=PER_RANK_BATCH,
        seed=3,
        sample_every=10_000,
        checkpoint_every=10_000,
        log_every=50,
        r1_gamma=1.0,
        r1_every=2,
        conditional=True,
        model=TINY,
    )
    base.update(kw)
    return TrainConfig(**base)


def _without_batchnorm(mc: ModelConfig, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """build_models with G's BatchNorm layers replaced by identities."""
    g, d = build_models(mc, seed=seed)

    def strip(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, name, nn.Identity())
            else:
                strip(child)

    strip(g)
    return g, d


def _out(tmp: Path, rank: int, name: str) -> Path:
    """Rank 0's run folder, or for rank 1 a folder of its own that must never be created."""
    return tmp / name if rank == 0 else tmp / f"rank{rank}-{name}"


def _equal_cfg(batch_size: int) -> TrainConfig:
    return _cfg(steps=EQUAL_STEPS, batch_size=batch_size, lr_g=1e-4, lr_d=1e-4)


def _equal_job(rank: int, tmp: Path) -> None:
    original = training.objectives.base.build_models
    training.objectives.base.build_models = _without_batchnorm  # type: ignore[assignment]
    try:
        run = _out(tmp, rank, "equal")
        DistributedTrainer(_equal_cfg(PER_RANK_BATCH), _data(), run, progress=False).fit()
    finally:
        training.objectives.base.build_models = original


def _resume_job(rank: int, tmp: Path) -> None:
    cfg = {"augment": True, "checkpoint_every": 6, "d_steps": 2}
    DistributedTrainer(_cfg(**cfg), _data(), _out(tmp, rank, "full"), progress=False).fit()
    DistributedTrainer(
        _cfg(**{**cfg, "steps": 12}), _data(), _out(tmp, rank, "part"), progress=False
    ).fit()
    torch.manual_seed(12345)  # whatever this process drew since: the resume must restore it
    resumed = resume_trainer(
        tmp / "part" / "checkpoints" / "latest",
        _data(),
        _out(tmp, rank, "part"),
        steps=24,
        progress=False,
        trainer_class=DistributedTrainer,
    )
    assert resumed.step == 12
    resumed.fit()


JOBS: dict[str, Callable[[int, Path], None]] = {"equal": _equal_job, "resume": _resume_job}


def _worker(rank: int, world: int, port: int, tmp: str, jobs: list[str]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    finished = False
    try:
        for job in jobs:
            JOBS[job](rank, Path(tmp))
        finished = True
    finally:
        shutdown(wait=finished)


def _train_state(run: Path) -> dict[str, Any]:
    state = load_train_state(run / "checkpoints" / "latest")  # G may lack its BatchNorm here
    assert isinstance(state, dict)
    return state


def _relative_distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    diff = sum(float((a[k] - b[k]).pow(2).sum()) for k in a)
    return (diff / sum(float(a[k].pow(2).sum()) for k in a)) ** 0.5


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both 2-process jobs in one spawn (each process start costs seconds on 2 cores)."""
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(2, free_port(), str(tmp), list(JOBS)), nprocs=2, join=True)
    return tmp


def test_two_processes_match_one_process_at_the_same_global_batch(
    two_process_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(training.objectives.base, "build_models", _without_batchnorm)
    for name, batch in (("global", 2 * PER_RANK_BATCH), ("per-rank", PER_RANK_BATCH)):
        Trainer(_equal_cfg(batch), _data(), tmp_path / name, progress=False).fit()
    two = _train_state(two_process_runs / "equal")
    one, control = _train_state(tmp_path / "global"), _train_state(tmp_path / "per-rank")
    for net in ("g", "d"):
        assert one[net].keys() == two[net].keys()
        distance = _relative_distance(one[net], two[net])
        assert distance < RTOL, f"{net}: relative distance {distance:.3g} after {EQUAL_STEPS} steps"
        # A run at the per-process batch is far outside the tolerance:
        assert _relative_distance(one[net], control[net]) > RTOL
    config = json.loads(
        (two_process_runs / "equal" / "checkpoints" / "latest" / "config.json").read_text()
    )
    assert config["training"]["world_size"] == 2
    assert config["training"]["global_batch_size"] == 2 * PER_RANK_BATCH
    assert config["training"]["batch_size"] == PER_RANK_BATCH


def test_rank_zero_alone_writes(two_process_runs: Path) -> None:
    written = sorted(p.name for p in two_process_runs.iterdir())
    assert written == ["equal", "full", "part"], written  # no rank1-* folder
    steps = [
        json.loads(x)["step"]
        for x in (two_process_runs / "full" / "log.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)), "a step was logged twice"


def test_resume_on_two_processes_is_exact(two_process_runs: Path) -> None:
    full, end = _train_state(two_process_runs / "full"), _train_state(two_process_runs / "part")
    assert full["step"] == end["step"] == 24 and full["world_size"] == 2
    for net in ("g", "d", "g_ema"):
        for k, v in full[net].items():
            assert torch.equal(v, end[net][k]), f"{net}.{k} differs after resume"
    assert len(full["ranks"]) == 2
    for a, b in zip(full["ranks"], end["ranks"], strict=True):
        for key in ("torch_rng", "z_gen", "aug_gen"):
            assert torch.equal(a[key], b[key]), f"rank {a['rank']}: {key} differs after resume"
    # The two processes' own random streams differ (augmentation, torch's RNG).
    assert not torch.equal(full["ranks"][0]["aug_gen"], full["ranks"][1]["aug_gen"])


# --------------------------------------------------------------------------------------------
# gan-train --nproc
# --------------------------------------------------------------------------------------------


def _gan_train(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "training.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_gan_train_nproc_2_writes_once_resumes_and_refuses_another_count(
    tmp_path: Path, mnist_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    common = ["--data-dir", str(mnist_dir), "--no-progress", "--nproc", "2"]
    first = _gan_train(
        "--data",
        "mnist",
        "--limit",
        "256",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--z-dim",
        "8",
        "--g-width",
        "4",
        "--d-width",
        "4",
        "--sample-every",
        "3",
        "--checkpoint-every",
        "3",
        "--log-every",
        "1",
        "--no-eval",
        "--out",
        str(run),
        *common,
        cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("run folder:") == 1, first.stdout
    resumed = _gan_train("--resume", str(run), "--steps", "9", *common, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr and "at step 6 -> 9" in resumed.stderr

    assert sorted(p.name for p in (run / "samples").iterdir()) == [
        "step-00000003.png",
        "step-00000006.png",
        "step-00000009.png",
    ]
    assert {p.name for p in (run / "checkpoints").iterdir()} >= {"latest", "step-00000009"}
    logged = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "d_loss" in r] == list(range(1, 10))
    config = json.loads((run / "checkpoints" / "latest" / "config.json").read_text())
    assert config["step"] == 9
    assert (config["training"]["world_size"], config["training"]["global_batch_size"]) == (2, 16)
    assert json.loads((run / "run.json").read_text())["global_batch_size"] == 16

    # Another process count: refused before any training, with one line.
    capsys.readouterr()
    assert train_main(["--resume", str(run), "--steps", "12", "--data-dir", str(mnist_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --resume: the run trained on 2 process")
    assert "--nproc 2" in err[0]
    assert train_main(["--resume", str(run), "--steps", "12", "--nproc", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resume it with --nproc 2" in err[0]


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--nproc", "0"], {}, "error: --nproc must be at least 1, got 0"),
        (["--nproc", "-2"], {}, "error: --nproc must be at least 1, got -2"),
        (
            ["--nproc", "3"],
            {"WORLD_SIZE": "2", "RANK": "0"},
            "error: --nproc 3, but this process is one of 2",
        ),
        (["--nproc", "2", "--device", "mps"], {}, "error: --device mps trains on one process only"),
        (["--nproc", "2", "--mode", "ebm"], {}, "error: --mode ebm trains on one process"),
        (["--mode", "ae"], {"WORLD_SIZE": "2", "RANK": "0"}, "error: --mode ae trains on one"),
    ],
)
def test_bad_nproc_is_one_error_line_and_exit_2(
    args: list[str],
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert train_main([*args, "--out", str(tmp_path / "run"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not (tmp_path / "run").exists()


def test_sync_batchnorm_generator_exports_as_plain_batchnorm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CUDA runs convert G to SyncBatchNorm, whose forward needs every process (and a GPU);
    without EMA the main process alone exports G, so it must export plain BatchNorm. Checked on
    a 1-process gloo group, where a SyncBatchNorm forward on the CPU would raise."""
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        trainer = DistributedTrainer(_cfg(ema_decay=0.0), _data(), tmp_path, progress=False)
        trainer.sync_batchnorm()
        assert any(isinstance(m, nn.SyncBatchNorm) for m in trainer.g.modules())
        with torch.no_grad(), pytest.raises(ValueError, match="GPU"):
            trainer.g.train()(*trainer._z(4))
        exported = trainer.export_generator()
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in exported.modules())
        assert any(isinstance(m, nn.BatchNorm2d) for m in exported.modules())
        weights = trainer.g.state_dict()
        for k, v in exported.state_dict().items():
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked")):
                assert torch.equal(v, weights[k]), k
        assert any(isinstance(m, nn.SyncBatchNorm) for m in trainer.g.modules())
    finally:
        dist.destroy_process_group()
