"""The lecture's three ways to generate, trained on the same budget and measured side by side.

* ``gan``: G with D (``gan-train``'s default recipe);
* ``vae``: G alone, the decoder of a variational auto-encoder trained on pixel loss + KL
  (``gan-train --mode ae``), sampled from the prior; ``--kinds`` may add ``ae``, the plain
  auto-encoder (``--ae-kind plain``);
* ``ebm``: D alone, trained on negatives from short-run Langevin search with a replay buffer and
  sampled by that search from noise (``gan-train --mode ebm``).

All are unconditional MNIST models at 28 px with the same G and D sizes (``--z-dim``,
``--width``). They train *interleaved* in short time slices (bench/interleave.py) until each has
spent ``--minutes`` of CPU time in its own training steps, so machine noise hits all alike. Each
is then evaluated exactly as ``gan-eval`` evaluates a checkpoint (the shared evaluator's
``evaluate_checkpoint``: ``--eval-num`` samples of image seeds 0.., FID, KID, precision, recall,
class coverage, beside the real-vs-real baseline), plus a sharpness measure (the mean over
images of the variance of the 3x3 Laplacian of the pixels in [0, 1], for the samples and for
as many real test digits) and the sampling cost per image (ms on this machine, forward and
backward passes). It writes ``three_ways.md`` (the table), ``three_ways.json``, a 64-image grid
per kind (``grid-<kind>.png``: the first 64 evaluated images, gan-sample --seed 0 --num 64) and the checkpoints without training state
under ``checkpoints/`` (``mnist-gan-small``, ``mnist-vae``, ``mnist-ebm``; the GAN calibrated
on the MNIST test set like a ``gan-train --export``), ready to copy to the repository's
``checkpoints/``. docs/lecture.md reads the table.

    python bench/three_ways.py                 # 10 minutes per kind (~35 minutes in all)
    python bench/three_ways.py --smoke         # a check of the whole pipeline, < 1 minute
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from interleave import train_interleaved  # bench/interleave.py (run as a script)

from gan.checkpoint import load_checkpoint
from gan.io import save_grid, write_json_atomic
from gan.models import ModelConfig
from gan.samplers.dispatch import Models, sample
from gan.samplers.plain import PlainOptions
from training.config import TrainConfig
from training.data import load_dataset, load_training_data
from training.export import calibrate_checkpoint, export_checkpoint
from training.loop import Trainer, trainer_for
from training.metrics.evaluator import Evaluator, sampling_record
from training.runtime import configure_torch

KINDS = ("gan", "vae", "ae", "ebm")
EXPORT_NAMES = {"gan": "mnist-gan-small", "vae": "mnist-vae", "ae": "mnist-ae", "ebm": "mnist-ebm"}
LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def recipes(args: argparse.Namespace) -> dict[str, TrainConfig]:
    """One TrainConfig per kind, the same model sizes for all."""
    model = ModelConfig(z_dim=args.z_dim, g_width=args.width, d_width=args.width)
    common: dict[str, Any] = {
        "seed": args.seed,
        "steps": 10**9,
        "log_every": 10**9,
        "batch_size": 64,
        "model": model,
    }
    ebm = {
        "mode": "ebm",
        "lr_d": 1e-4,
        "beta1": 0.0,
        "beta2": 0.999,
        "ebm_steps": args.ebm_steps,
        "ebm_sample_steps": args.ebm_sample_steps,
        "ebm_buffer_size": args.ebm_buffer_size,
    }
    ae = {"mode": "ae", "lr_g": 1e-3, "beta1": 0.9, "beta2": 0.999}
    all_recipes = {
        "gan": TrainConfig(**common),
        "vae": TrainConfig(**common, **ae),
        "ae": TrainConfig(**common, **ae, ae_kind="plain"),
        "ebm": TrainConfig(**common, **ebm),
    }
    return {k: all_recipes[k] for k in args.kinds}


def sharpness(images: torch.Tensor, chunk: int = 1000) -> float:
    """Mean over images of the variance of the 3x3 Laplacian of the pixels in [0, 1] (grey
    level; higher: more edges, sharper)."""
    values: list[torch.Tensor] = []
    for start in range(0, int(images.shape[0]), chunk):
        x = images[start : start + chunk].float().mean(1, keepdim=True) / 255.0  # [B, 1, H, W]
        values.append(F.conv2d(x, LAPLACIAN).flatten(1).var(1))
    return float(torch.cat(values).mean())


def megabytes(path: Path) -> float:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()) / 1e6


def markdown(rows: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    base = meta["baseline"]
    head = [
        "kind",
        "training steps",
        "FID",
        "KID",
        "precision",
        "recall",
        "class entropy",
        "smallest class share",
        "sharpness (real)",
        "ms / image",
        "forwards / image",
        "backwards / image",
        "checkpoint MB",
    ]
    lines = [
        f"MNIST, unconditional, 28 px; z_dim {meta['z_dim']}, widths {meta['width']}; "
        f"{meta['minutes']:g} min of training each (interleaved in {meta['slice_s']:g} s "
        f"slices), {meta['threads']} torch threads; {meta['eval_num']} samples each (image "
        f"seeds 0..), evaluated as gan-eval does. Real vs real at this size: FID "
        f"{base['fid']:.2f}, KID {base['kid']:.4f}, precision {base['precision']:.3f}, recall "
        f"{base['recall']:.3f}, class entropy {base['coverage_entropy']:.3f}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for kind, r in rows.items():
        m, cost = r["metrics"], r["cost_per_image"]
        cells = [
            f"`{kind}`",
            str(r["steps"]),
            f"{m['fid']:.2f}",
            f"{m['kid']:.4f}",
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['coverage_entropy']:.3f}",
            f"{m['coverage_min_share']:.3f}",
            f"{r['sharpness']:.4f} ({meta['real_sharpness']:.4f})",
            f"{cost['ms']:.3f}",
            f"{cost['forwards']:.0f}",
            f"{cost['backwards']:.0f}",
            f"{r['checkpoint_mb']:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Sharpness: the mean over images of the variance of the 3x3 Laplacian of the grey "
        "levels in [0, 1], samples beside the same number of real test digits (in brackets). "
        "Costs: per image on this machine, forward and backward passes through G and D "
        "(one image through one network counts 1)."
    )
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10.0, help="training minutes per kind (10)")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per interleaved turn (5)")
    p.add_argument("--kinds", default="gan,vae,ebm", help=f"comma-separated, of {', '.join(KINDS)}")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--z-dim", type=int, default=32, help="latent size of every kind (32)")
    p.add_argument("--width", type=int, default=32, help="g_width and d_width of every kind (32)")
    p.add_argument("--ebm-steps", type=int, default=20, help="ebm: Langevin steps in training (20)")
    p.add_argument(
        "--ebm-sample-steps",
        type=int,
        default=100,
        help="ebm: Langevin steps from noise when sampling (100)",
    )
    p.add_argument("--ebm-buffer-size", type=int, default=10000)
    p.add_argument("--eval-num", type=int, default=10000, help="samples per kind (10000)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST folder")
    p.add_argument("--out", type=Path, default=Path("runs/three-ways"))
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a check of the whole pipeline in under a minute: 6 s of training each, "
        "500 samples, short searches",
    )
    args = p.parse_args()
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(args.kinds) - set(KINDS))
    if unknown or not args.kinds:
        p.error(f"--kinds: unknown {unknown}; use some of {', '.join(KINDS)}")
    if args.smoke:
        args.minutes, args.slice, args.eval_num = 0.1, 2.0, 500
        args.ebm_steps, args.ebm_sample_steps, args.ebm_buffer_size = 5, 10, 1000
    configure_torch(args.threads)
    budget = 60.0 * args.minutes

    trainers: dict[str, Trainer] = {}
    held = None
    for kind, cfg in recipes(args).items():
        data, held = load_training_data(
            "mnist",
            args.data_dir,
            cfg.model.resolution,
            cfg.model.channels,
            seed=cfg.seed,
            progress=False,
        )
        trainer = trainer_for(cfg)(
            cfg, data, args.out / "runs" / kind, heldout=held, progress=False
        )
        trainer.out.mkdir(parents=True, exist_ok=True)
        trainers[kind] = trainer
    print(
        f"training {', '.join(trainers)} for {budget:.0f} s each, interleaved in "
        f"{args.slice:g} s slices",
        file=sys.stderr,
    )
    wall = train_interleaved(trainers, budget, args.slice)

    evaluator = Evaluator(data_dir=args.data_dir)
    real = load_dataset(
        "mnist", args.data_dir, resolution=28, channels=1, split="test", progress=False
    )
    real_sharpness = sharpness(real.images[: args.eval_num])
    rows: dict[str, dict[str, Any]] = {}
    baseline: dict[str, Any] = {}
    for kind, t in trainers.items():
        step_dir = t.save_checkpoint()
        export = args.out / "checkpoints" / EXPORT_NAMES[kind]
        export_checkpoint(step_dir, export)
        if kind == "gan" and held is not None:
            calibrate_checkpoint(
                export, held.images, held.labels, real_source="MNIST test set (never trained on)"
            )
        started = time.perf_counter()
        # What gan-eval --checkpoint EXPORT --num N --seed 0 does (Evaluator.evaluate_checkpoint),
        # keeping the images for the sharpness.
        drawn = sample(Models.of(load_checkpoint(export)), PlainOptions(), seed=0, n=args.eval_num)
        result = evaluator.evaluate_images(drawn.images, seed=0)
        save_grid(drawn.images[:64], args.out / f"grid-{kind}.png", nrow=8)
        baseline = result["baseline"]
        rows[kind] = {
            "steps": t.step,
            "train_seconds": round(t.train_seconds, 1),
            "metrics": result["metrics"],
            "cost_per_image": sampling_record(drawn)["cost_per_image"],
            "sharpness": sharpness(drawn.images),
            "checkpoint": str(export),
            "checkpoint_mb": megabytes(export),
            "grid": str(args.out / f"grid-{kind}.png"),
            "eval_seconds": round(time.perf_counter() - started, 1),
        }
        m = result["metrics"]
        print(
            f"{kind}: {t.step} steps, FID {m['fid']:.2f}, precision {m['precision']:.3f}, "
            f"recall {m['recall']:.3f}, sharpness {rows[kind]['sharpness']:.4f} (real "
            f"{real_sharpness:.4f}), {rows[kind]['cost_per_image']['ms']:.3f} ms/image",
            file=sys.stderr,
        )
    meta = {
        "minutes": args.minutes,
        "slice_s": args.slice,
        "threads": torch.get_num_threads(),
        "seed": args.seed,
        "z_dim": args.z_dim,
        "width": args.width,
        "eval_num": args.eval_num,
        "wall_s": round(wall, 1),
        "real_sharpness": real_sharpness,
        "baseline": baseline,
        "smoke": args.smoke,
        "command": " ".join(sys.argv),
        "recipes": {k: t.cfg.to_dict() for k, t in trainers.items()},
    }
    table = markdown(rows, meta)
    (args.out / "three_ways.md").write_text(table)
    write_json_atomic(args.out / "three_ways.json", {"meta": meta, "kinds": rows})
    print(table)
    print(f"table, JSON, grids and checkpoints in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
