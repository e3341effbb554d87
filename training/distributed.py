"""Training on several processes with ``torch.distributed``: DistributedDataParallel G and D.

``torchrun --nproc-per-node N -m training.cli ...`` (or ``gan-train --nproc N ...``, which runs
torchrun on this machine) starts N copies of ``gan-train``; each finds ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK`` in its environment, joins the process group (``gloo`` on the CPU, ``nccl`` on
CUDA, one GPU per process) and trains a :class:`DistributedTrainer`:

* Every process keeps the same deterministic data order as a one-process run with the global
  batch ``batch_size x N`` (same shuffling generator, same permutation) and takes its own
  ``batch_size`` slice of each global batch; the latents and classes of the fake batches are
  drawn the same way (the global batch drawn, the process's slice kept). G and D are wrapped in
  DistributedDataParallel, whose all-reduce averages the gradients: the average of N slice means
  is the mean over the global batch, so one step is the one-process step on the global batch up
  to float rounding (whenever no layer mixes the images of a batch: see BatchNorm below).
* D's step runs D's wrapper twice (real, then fake, then R1 on the reals when it is due) before
  one backward: each parameter's gradient accumulator still fires once per backward, so DDP
  reduces each gradient once. ``forward_sync_buffers=False`` (the former
  ``broadcast_buffers=False``), so no buffer is overwritten between those forwards and the
  backward.
* G's step calls G's wrapper and D itself (not its wrapper), with D's parameters frozen: only G's
  gradients are all-reduced, and D's reducer never waits for gradients that do not come.
* BatchNorm in G: on CUDA it becomes SyncBatchNorm (statistics over the global batch, as one
  process has them). On the CPU torch has no SyncBatchNorm, so each process normalises with the
  statistics of its own slice: a valid GAN step, but not the one-process step, and the running
  statistics that are saved (and copied into the EMA generator) are the main process's.
* ``--augment`` draws each process's augmentations from its own generator (seeded with the
  process's rank), so augmented runs are reproducible and resumable but not equal to one-process
  runs.
* The main process (rank 0) alone writes the run folder: run.json, logs, grids, evaluation,
  TensorBoard, the loss curve and checkpoints; the other processes send it their random states
  at each checkpoint, which stores them per rank. ``--resume`` gives every process its own state
  back and continues exactly; it needs the same number of processes (the global batch and the
  data slices depend on it) and says so otherwise.
* The time budget and stop signals are agreed on by all processes each step (an all-reduce), so
  they stop after the same step.
"""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gan.models import build_models
from training.config import TrainConfig, TrainingError
from training.data import ImageData
from training.loop import Trainer
from training.runtime import Batches, resolve_device

#: Seed offset between the processes' own random streams (augmentation, torch's global RNG).
RANK_SEED_STRIDE = 1_000_003


@dataclass(frozen=True)
class ProcessEnv:
    """This process's place in a torchrun launch (from its environment)."""

    world_size: int
    rank: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def process_env(environ: dict[str, str] | None = None) -> ProcessEnv | None:
    """The torchrun variables of this process, or None when it runs alone (no ``WORLD_SIZE``,
    or a world of one)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world, rank = int(env["WORLD_SIZE"]), int(env.get("RANK", "0"))
        local = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise TrainingError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers: {exc}") from exc
    if world < 1 or not 0 <= rank < world or local < 0:
        raise TrainingError(f"inconsistent torchrun environment: WORLD_SIZE={world}, RANK={rank}")
    return None if world == 1 else ProcessEnv(world, rank, local)


def init_process_group(penv: ProcessEnv, device_name: str) -> torch.device:
    """Join the process group (``MASTER_ADDR``/``MASTER_PORT`` from torchrun): gloo on the CPU,
    nccl on CUDA with GPU ``LOCAL_RANK``; returns this process's device."""
    device = resolve_device(device_name)
    if device.type == "mps":
        raise TrainingError("--device mps trains on one process only; leave out --nproc / torchrun")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if penv.local_rank >= count:
            raise TrainingError(
                f"process {penv.local_rank} on this node needs its own GPU, and there are {count}; "
                f"start at most {count} processes per node"
            )
        torch.cuda.set_device(penv.local_rank)
        device = torch.device("cuda", penv.local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, rank=penv.rank, world_size=penv.world_size)
    return device


def shutdown(*, wait: bool = False) -> None:
    """Leave the process group (if this process joined one). ``wait``: first wait at a barrier
    until every process is here (the normal end of a run; not after an error, where another
    process may never arrive). Objects that still hold the group (DDP's reducer, pending gloo
    work) are collected first: one that outlives the group and dies at interpreter exit can
    abort the process (SIGABRT, "terminate called without an active exception")."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if wait:
            dist.barrier()
        dist.destroy_process_group()


@contextmanager
def main_first(penv: ProcessEnv | None) -> Iterator[None]:
    """Run the block on the main process first, then on the others: the main process fills
    caches and downloads that the others then only read."""
    if penv is not None and not penv.is_main:
        dist.barrier()
    yield
    if penv is not None and penv.is_main:
        dist.barrier()


class _ShardedBatches(Batches):
    """The one-process order of the global batch (``batch_size x world``); this process's
    ``batch_size`` slice of each. The state is the global order's, the same on every process."""

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int,
        seed: int,
        labels: torch.Tensor | None,
        rank: int,
        world: int,
    ) -> None:
        if len(images) < batch_size * world:
            raise TrainingError(
                f"the dataset has {len(images)} images, fewer than the global batch "
                f"{batch_size * world} (--batch-size {batch_size} x {world} processes)"
            )
        super().__init__(images, batch_size * world, seed, labels)
        self.slice = slice(rank * batch_size, (rank + 1) * batch_size)

    def next(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        images, labels = super().next()
        return images[self.slice], None if labels is None else labels[self.slice]


class DistributedTrainer(Trainer):
    """The loop (:class:`Trainer`, with its objective) for one process of a torch.distributed
    group (already initialised); its networks train through DistributedDataParallel wrappers
    (``train_networks``), which the GAN objective calls."""

    def __init__(self, cfg: TrainConfig, data: ImageData, out_dir: Path, **kwargs: Any) -> None:
        if not dist.is_initialized():
            raise RuntimeError("DistributedTrainer needs torch.distributed initialised first")
        rank, world = dist.get_rank(), dist.get_world_size()
        if rank != 0:
            kwargs["progress"] = False
        super().__init__(cfg, data, out_dir, **kwargs)
        self.rank, self.world_size, self.is_main = rank, world, rank == 0
        labels = data.labels if self.mc.conditional else None
        self.batches = _ShardedBatches(data.images, cfg.batch_size, cfg.seed, labels, rank, world)
        if rank:  # the main process keeps the one-process streams
            torch.manual_seed(cfg.seed + RANK_SEED_STRIDE * rank)
            self.aug_gen.manual_seed(cfg.seed + 4 + RANK_SEED_STRIDE * rank)
        ddp: dict[str, Any] = {"forward_sync_buffers": False}
        if self.device.type == "cuda":
            self.sync_batchnorm()
            ddp["device_ids"] = [self.device.index]
        self.train_networks = {
            name: DistributedDataParallel(net, **ddp) for name, net in self.networks.items()
        }
        self._rank_states: list[dict[str, Any]] = []

    def sync_batchnorm(self) -> None:
        """G's BatchNorm layers become SyncBatchNorm (in place: the same parameters and buffers,
        so the optimiser and the EMA keep them)."""
        self.g = nn.SyncBatchNorm.convert_sync_batchnorm(self.g)

    def export_generator(self) -> nn.Module:
        """As on one process; without an EMA copy, G's SyncBatchNorm layers (whose forward
        needs every process, while the main one alone exports) are exported as plain BatchNorm."""
        if self.g_ema is not None or not any(
            isinstance(m, nn.SyncBatchNorm) for m in self.g.modules()
        ):
            return super().export_generator()
        synced = self.g
        plain, _ = build_models(self.mc, seed=self.cfg.seed)
        plain.load_state_dict(synced.state_dict())
        self.g = plain.to(self.device)
        try:
            return super().export_generator()
        finally:
            self.g = synced

    def _z(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This process's slice of the global batch's latents and classes."""
        z, y = super()._z(n * self.world_size)
        part = slice(self.rank * n, (self.rank + 1) * n)
        return z[part], None if y is None else y[part]

    def rank_state(self) -> dict[str, Any]:
        """The random states that differ between processes."""
        return {
            "rank": self.rank,
            "torch_rng": torch.get_rng_state(),
            "z_gen": self.z_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
        }

    def state(self) -> dict[str, Any]:
        return {**super().state(), "ranks": self._rank_states}

    def load_state(self, s: dict[str, Any]) -> None:
        super().load_state(s)  # refuses another number of processes
        ranks = s.get("ranks") or []
        if len(ranks) != self.world_size:
            raise TrainingError(
                f"--resume: the checkpoint holds the states of {len(ranks)} processes, not "
                f"{self.world_size}; it was not written by a {self.world_size}-process run"
            )
        mine = ranks[self.rank]
        torch.set_rng_state(mine["torch_rng"])
        self.z_gen.set_state(mine["z_gen"])
        self.aug_gen.set_state(mine["aug_gen"])

    def save_checkpoint(self, metric: float | None = None, g: nn.Module | None = None) -> Path:
        """Every process sends its random states to the main one, which writes the checkpoint;
        all return its path."""
        gathered: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(self.rank_state(), gathered, dst=0)
        box: list[Any] = [None]
        if self.is_main:
            assert gathered is not None
            self._rank_states = [dict(s) for s in gathered]
            box[0] = str(super().save_checkpoint(metric, g))
        dist.broadcast_object_list(box, src=0)
        return Path(box[0])

    def sync_stop(self, over_budget: bool) -> bool:
        """All processes stop at the same step: for anyone's time budget or stop signal."""
        flags = torch.tensor([int(over_budget), self.stop_signal or 0], device=self.device)
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        if flags[1].item() and self.stop_signal is None:
            self.stop_signal = int(flags[1].item())
        return bool(flags[0].item())


# --------------------------------------------------------------------------------------------
# gan-train --nproc N: torchrun on this machine
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_nproc(nproc: int, device_name: str) -> None:
    """Refuse a process count this machine cannot run (a :class:`TrainingError`)."""
    if nproc < 1:
        raise TrainingError(f"--nproc must be at least 1, got {nproc}")
    penv = process_env()
    if penv is not None or "WORLD_SIZE" in os.environ:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if nproc != world:
            raise TrainingError(
                f"--nproc {nproc}, but this process is one of {world} started by torchrun; leave "
                "--nproc out under torchrun (its --nproc-per-node sets the count)"
            )
        return
    if device_name == "mps" and nproc > 1:
        raise TrainingError("--device mps trains on one process only; leave out --nproc")
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    if cuda and nproc > torch.cuda.device_count():
        raise TrainingError(
            f"--nproc {nproc} needs one GPU per process and this machine has "
            f"{torch.cuda.device_count()}; use at most that many, or --device cpu"
        )


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` (or ``--nproc=N``, or an abbreviation argparse took)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if len(name) >= 4 and "--nproc".startswith(name):
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``gan-train argv`` (less its ``--nproc``) on ``nproc`` processes of this machine with
    torchrun (loopback rendezvous on a free port); returns torchrun's exit status."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "training.cli",
        *without_nproc(argv),
    ]
    return subprocess.call(cmd)
