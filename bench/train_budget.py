"""Same wall-clock training budget, three recipes, one run: the default vs two plain DCGANs.

(a) ``default``: the project's default config (training/config.py TrainConfig + ModelConfig
    defaults: Adam 5e-4/5e-4 (0.5, 0.99), EMA 0.999 with warm-up, channels_last), unconditional
    like every recipe here;
(b) ``compact``: a plain compact DCGAN, the kind written in an hour: the same 28 px
    architecture, BCE, the textbook Adam 2e-4 (0.5, 0.999), batch 64, an EMA of G (0.999) and
    nothing else (contiguous tensors);
(c) ``classic``: the classic 32x32 DCGAN MNIST recipe: Linear to 128x8x8, two upsample+conv
    blocks with BatchNorm; D of four stride-2 conv blocks with LeakyReLU, dropout 0.25 and
    BatchNorm; BCE loss; Adam 2e-4 (0.5, 0.999); batch 64; no EMA; contiguous tensors.

All train *interleaved* in short time slices until each has spent ``--budget`` seconds in its
own training steps, so background noise on a shared machine hits all alike. All are then
evaluated with ``gan-eval`` (the project's MNIST-classifier FID/KID/precision/recall/coverage,
10,000 samples) and the script prints it/s, images/s, FID at budget and the ratios.

    python bench/train_budget.py                # 8 minutes each (about 26 minutes in all)
    python bench/train_budget.py --budget 60    # a quick look
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from interleave import train_interleaved  # bench/interleave.py (run as a script)

from gan.io import save_grid
from gan.models import ModelConfig
from gan.sampling import sample
from training.cli import eval_main
from training.config import TrainConfig
from training.data import load_training_data
from training.loop import Trainer
from training.runtime import configure_torch


def recipes(seed: int) -> dict[str, TrainConfig]:
    return {
        "default": TrainConfig(seed=seed, steps=10**9, log_every=10**9, model=ModelConfig()),
        # The default at half the widths (the folder defaults' widths): about twice the steps.
        "default-w32": TrainConfig(
            seed=seed, steps=10**9, log_every=10**9, model=ModelConfig(g_width=32, d_width=32)
        ),
        "compact": TrainConfig(
            seed=seed,
            steps=10**9,
            log_every=10**9,
            batch_size=64,
            loss="nonsat",
            lr_g=2e-4,
            lr_d=2e-4,
            beta1=0.5,
            beta2=0.999,
            ema_decay=0.999,
            ema_warmup=0,
            channels_last=False,
            model=ModelConfig(),
        ),
        "classic": TrainConfig(
            seed=seed,
            steps=10**9,
            log_every=10**9,
            batch_size=64,
            loss="nonsat",
            lr_g=2e-4,
            lr_d=2e-4,
            beta1=0.5,
            beta2=0.999,
            ema_decay=0.0,
            channels_last=False,
            model=ModelConfig(resolution=32, channels=1, z_dim=100, arch="classic"),
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--budget", type=float, default=480.0, help="training seconds per recipe")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per interleaved turn")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-num", type=int, default=10000)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/bench-train-budget"))
    p.add_argument(
        "--recipes",
        default="default,compact,classic",
        help="comma-separated, of default, default-w32, compact, classic; default first "
        "(the ratios are to it)",
    )
    args = p.parse_args()
    configure_torch(args.threads)

    known = recipes(args.seed)
    chosen = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if not chosen or chosen[0] != "default" or any(r not in known for r in chosen):
        p.error(f"--recipes: 'default' first, then any of {', '.join(known)}; got {args.recipes}")
    trainers: dict[str, Trainer] = {}
    for name, cfg in ((r, known[r]) for r in chosen):
        data, held = load_training_data(
            "mnist",
            args.data_dir,
            cfg.model.resolution,
            cfg.model.channels,
            seed=cfg.seed,
            progress=False,
        )
        trainers[name] = Trainer(cfg, data, args.out / name, heldout=held, progress=False)
        trainers[name].out.mkdir(parents=True, exist_ok=True)

    print(
        f"training {len(trainers)} recipes for {args.budget:.0f} s each, interleaved in {args.slice:.0f} s slices"
    )
    wall = train_interleaved(trainers, args.budget, args.slice)

    results: dict[str, dict] = {}
    for name, t in trainers.items():
        ckpt = t.save_checkpoint()
        grid = sample(t.export_generator(), t.mc.z_dim, seed=0, n=64)
        save_grid(grid, args.out / f"{name}-samples.png", nrow=8)
        out_json = args.out / f"{name}-eval.json"
        rc = eval_main(
            [
                "--checkpoint",
                str(ckpt),
                "--num",
                str(args.eval_num),
                "--json",
                str(out_json),
                *(["--data-dir", str(args.data_dir)] if args.data_dir else []),
            ]
        )
        if rc != 0:
            raise SystemExit(f"gan-eval failed for {name}")
        ev = json.loads(out_json.read_text())
        imgs_per_it = t.cfg.batch_size * (t.cfg.d_steps + 1)
        results[name] = {
            "steps": t.step,
            "train_seconds": round(t.train_seconds, 1),
            "it_per_s": t.step / t.train_seconds,
            "images_per_s": t.step * imgs_per_it / t.train_seconds,
            "eval": ev,
        }

    def metric(name: str, key: str) -> float:
        ev = results[name]["eval"]
        return float(ev["metrics"][key] if "metrics" in ev else ev[key])

    names = list(results)
    keys = ("fid", "kid", "precision", "recall", "coverage_entropy")
    print(
        f"\nwall time {wall:.0f} s; budget {args.budget:.0f} s of training per recipe; "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"{'':28}" + "".join(f"{n:>12}" for n in names))
    rows = [
        ("iterations", [results[n]["steps"] for n in names]),
        ("iterations/s", [results[n]["it_per_s"] for n in names]),
        ("images/s (D+G forwards)", [results[n]["images_per_s"] for n in names]),
        *((key, [metric(n, key) for n in names]) for key in keys),
    ]
    for label, values in rows:
        print(f"{label:28}" + "".join(f"{v:>12.4g}" for v in values))
    ratios = {
        f"fid_{other}_over_default": metric(other, "fid") / metric("default", "fid")
        for other in names
        if other != "default"
    }
    for key, value in ratios.items():
        print(f"FID at budget, {key.removeprefix('fid_')}: {value:.2f}x (above 1: default better)")
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                "budget_s": args.budget,
                "wall_s": wall,
                "threads": torch.get_num_threads(),
                "results": {
                    k: {kk: vv for kk, vv in v.items() if kk != "eval"}
                    | {m: metric(k, m) for m in keys}
                    for k, v in results.items()
                },
                **ratios,
            },
            indent=2,
        )
    )
    print(f"samples and JSON in {args.out}")


if __name__ == "__main__":
    main()
