"""How well and how fast images project into a checkpoint's latent space (gan/projection.py).

Held-out MNIST test digits (never trained on) are projected one at a time, as ``POST /project``
does, **with no label given**, under several variants of the search; for each variant:

* ``reads``: the share of reconstructions that the MNIST classifier reads as the original's
  true digit (the target: >= 95 %);
* ``class``: the share whose projected class is the true digit (conditional models);
* mean and median pixel MSE in [0, 1] units (target: mean <= 0.01);
* median seconds per image (target: <= 2 s on the 2-core CPU), with the torch threads given.

Variants: with or without the checkpoint's encoder (``gan-train-encoder``), and with pixel
MSE alone or plus the perceptual distance in D's feature maps. Writes ``summary.md``,
``summary.json`` and a picture of originals above each variant's reconstructions.

    python bench/projection.py                         # 30 digits, the bundled checkpoint
    python bench/projection.py --num 5 --steps 20      # a smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gan.checkpoint import load_checkpoint  # noqa: E402
from gan.io import save_grid  # noqa: E402
from gan.projection import ProjectOptions, project  # noqa: E402
from training.metrics.classifier import load_classifier  # noqa: E402
from training.mnist import load_mnist  # noqa: E402

#: name -> (use the encoder, perceptual weight)
#: pixels: pixel MSE alone (the search's default); d: plus the perceptual distance in D's
#: features (weight 0.1); enc-: started from the checkpoint's encoder (its top 3 classes), else
#: every class.
VARIANTS: dict[str, tuple[bool, float]] = {
    "pixels": (False, 0.0),
    "pixels+d": (False, 0.1),
    "enc-pixels": (True, 0.0),
    "enc-pixels+d": (True, 0.1),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "mnist")
    p.add_argument("--classifier", type=Path, default=ROOT / "checkpoints" / "mnist-classifier")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST IDX folder")
    p.add_argument("--num", type=int, default=30, help="test digits (the first N; 30)")
    p.add_argument("--first", type=int, default=0, help="index of the first test digit")
    p.add_argument("--steps", type=int, default=ProjectOptions().steps)
    p.add_argument("--restarts", type=int, default=ProjectOptions().restarts)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the service's)")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-projection")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    ckpt = load_checkpoint(args.checkpoint)
    assert ckpt.generator is not None
    clf = load_classifier(args.classifier)
    test = load_mnist(args.data_dir, split="test")
    assert test.labels is not None
    images = test.images[args.first : args.first + args.num]
    truth = test.labels[args.first : args.first + args.num]
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    pictures = [images]
    for name in names:
        use_encoder, weight = VARIANTS[name]
        if use_encoder and ckpt.encoder is None:
            print(f"{name}: skipped, {args.checkpoint} has no encoder (gan-train-encoder)")
            continue
        options = ProjectOptions(steps=args.steps, restarts=args.restarts, perceptual=weight)
        recons, labels, mses, seconds = [], [], [], []
        for i in range(len(images)):
            started = time.perf_counter()
            (r,) = project(
                ckpt.generator,
                ckpt.model_config,
                images[i : i + 1],
                [None],
                options,
                discriminator=ckpt.discriminator,
                encoder=ckpt.encoder if use_encoder else None,
            )
            seconds.append(time.perf_counter() - started)
            recons.append(r.image)
            labels.append(r.label)
            mses.append(r.mse)
        rec = torch.stack(recons)
        reads = float((clf.predict(rec) == truth).float().mean())
        cls = None
        if ckpt.model_config.conditional:
            cls = sum(int(a == int(b)) for a, b in zip(labels, truth, strict=True)) / len(labels)
        rows[name] = {
            "reads": reads,
            "class": cls,
            "mse_mean": statistics.fmean(mses),
            "mse_median": statistics.median(mses),
            "seconds_median": statistics.median(seconds),
            "seconds_mean": statistics.fmean(seconds),
        }
        pictures.append(rec)
        print(f"{name}: {rows[name]}", flush=True)
    save_grid(torch.cat(pictures), args.out / "projections.png", nrow=len(images))
    lines = [
        f"{len(images)} MNIST test digits (from index {args.first}), no label given, one image "
        f"per call, {args.steps} steps x {args.restarts} restarts, {args.threads} torch "
        f"thread(s); {args.checkpoint.name}.",
        "",
        "| variant | reads as the digit | projected class right | mean MSE | median MSE | "
        "median s/image |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        cls = "–" if r["class"] is None else f"{100 * r['class']:.0f} %"
        lines.append(
            f"| {name} | {100 * r['reads']:.0f} % | {cls} | {r['mse_mean']:.4f} | "
            f"{r['mse_median']:.4f} | {r['seconds_median']:.2f} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / "summary.md").write_text(table + "\n")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
