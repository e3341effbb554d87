"""Training images/s on 1 and 2 processes (torch.distributed, gloo on the CPU), side by side.

Three set-ups train the default model (``TrainConfig()`` and ``ModelConfig()`` defaults, 28x28,
D and G each updated once per step) on random uint8 images of MNIST's shape (throughput does not
depend on the pixels):

* ``1 proc, batch B``                      one process, ``--threads`` torch threads
* ``1 proc, batch 2B``                     one process, the global batch of the 2-process run
* ``2 procs, batch B each (global 2B)``    two DistributedTrainer processes, ``--threads`` / 2
  torch threads each (what torchrun's OMP_NUM_THREADS=1 does on 2 cores)

Each set-up runs in fresh processes for ``--warmup`` untimed steps and then ``--seconds`` of
timed training steps (train_step only: no grids, checkpoints or evaluation); the set-ups take
turns for ``--rounds`` rounds, so background load on a shared machine hits all of them alike, and
the median of the rounds is reported with the ratios:

* same per-rank batch: 2 procs at B each vs 1 proc at B (the weak-scaling view);
* same global batch: 2 procs at B each vs 1 proc at 2B (the same training maths, faster or not).

Images/s counts what G and D process: global batch x (d_steps + 1) per step, as the training
log's ``img_s``.

    python bench/ddp_throughput.py                       # B=64, 3 rounds of 20 s
    python bench/ddp_throughput.py --batch 32 --seconds 10 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training.config import TrainConfig
from training.data import ImageData
from training.distributed import DistributedTrainer, free_port
from training.loop import Trainer


def _data(n: int) -> ImageData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8)
    return ImageData(images, None, {"name": "random"})


def _measure(trainer: Trainer, warmup: int, seconds: float) -> tuple[int, float]:
    """(timed steps, their seconds) after ``warmup`` untimed steps; on several processes the
    main process decides when the time is up and all stop at the same step."""
    for _ in range(warmup):
        trainer.train_step()
    steps, start = 0, time.perf_counter()
    while True:
        trainer.train_step()
        steps += 1
        done = time.perf_counter() - start >= seconds
        if dist.is_initialized():
            flag = torch.tensor([int(done)])
            dist.broadcast(flag, src=0)
            done = bool(flag.item())
        if done:
            return steps, time.perf_counter() - start


def _worker(rank: int, world: int, port: int, setup: dict[str, Any], out: str) -> None:
    torch.set_num_threads(setup["threads"])
    cfg = TrainConfig(batch_size=setup["batch"], steps=10**9, log_every=10**9, seed=0)
    data = _data(max(4096, 4 * setup["batch"] * world))
    with tempfile.TemporaryDirectory() as tmp:  # nothing is written there: train_step only
        if world > 1:
            os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            dist.init_process_group("gloo", rank=rank, world_size=world)
            trainer: Trainer = DistributedTrainer(cfg, data, Path(tmp), progress=False)
        else:
            trainer = Trainer(cfg, data, Path(tmp), progress=False)
        trainer.g.train()
        trainer.d.train()
        steps, seconds = _measure(trainer, setup["warmup"], setup["seconds"])
        if dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        images = steps * setup["batch"] * world * (cfg.d_steps + 1)
        Path(out).write_text(
            json.dumps({"steps": steps, "seconds": seconds, "img_s": images / seconds})
        )


def run_setup(setup: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        args = (setup["procs"], free_port(), setup, out)
        mp.spawn(_worker, args=args, nprocs=setup["procs"], join=True)
        result: dict[str, Any] = json.loads(Path(out).read_text())
        return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="per-process batch B (64)")
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch threads of the 1-process runs; the 2 processes get half each "
        "(default: the CPU count)",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="timed seconds per run (20)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per run (5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the three set-ups (3)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args()
    b, t = args.batch, args.threads
    setups = {
        "1 proc, batch B": {"procs": 1, "batch": b, "threads": t},
        "1 proc, batch 2B": {"procs": 1, "batch": 2 * b, "threads": t},
        "2 procs, batch B each (global 2B)": {"procs": 2, "batch": b, "threads": max(1, t // 2)},
    }
    for s in setups.values():
        s.update(seconds=args.seconds, warmup=args.warmup)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"B={b}, {args.rounds} rounds of {args.seconds:g} s each"
    )
    results: dict[str, list[float]] = {name: [] for name in setups}
    for r in range(args.rounds):
        for name, setup in setups.items():
            res = run_setup(setup)
            results[name].append(res["img_s"])
            print(
                f"round {r + 1}: {name:36s} {res['img_s']:8.1f} img/s ({res['steps']} steps, "
                f"{setup['threads']} thread(s) per process)",
                flush=True,
            )
    median = {name: statistics.median(v) for name, v in results.items()}
    print("\nmedian images/s")
    for name, v in median.items():
        print(f"  {name:36s} {v:8.1f}")
    two = median["2 procs, batch B each (global 2B)"]
    same_rank = two / median["1 proc, batch B"]
    same_global = two / median["1 proc, batch 2B"]
    print(f"2 procs / 1 proc, same per-rank batch B:  {same_rank:.2f}x")
    print(f"2 procs / 1 proc, same global batch 2B:   {same_global:.2f}x")
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                {
                    "batch": b,
                    "threads": t,
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "cpus": os.cpu_count(),
                    "img_s": results,
                    "median": median,
                    "ratio_same_per_rank_batch": same_rank,
                    "ratio_same_global_batch": same_global,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
