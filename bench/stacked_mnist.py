"""Stacked MNIST: mode coverage on 1,000 equally likely modes (PacGAN, VEEGAN, R3GAN protocol).

Each training image is three MNIST training digits drawn independently at random (seeded) as
its R, G and B channels: 28x28 RGB, label ``100 * d_R + 10 * d_G + d_B``, so 1,000 modes of
equal probability (:mod:`training.metrics.stacked`). The images are built in memory from the
MNIST IDX files as an :class:`~training.imagedata.ImageData` and go through the usual
:class:`~training.loop.Trainer`; 2,000 stacked *test-set* digits are the held-out real images.
The variants train unconditionally, interleaved (``bench/interleave.py``: equal seconds of
training steps each, in turns, so machine noise hits all alike); then ``--num`` samples of each
(26,000 in the papers) are read with the project's MNIST classifier, one channel at a time:

* ``modes``: distinct (d_R, d_G, d_B) among the samples (of 1,000);
* ``KL``: KL(p_model || uniform) of the mode histogram, sum of p log(1000 p) over the hit modes
  (0 for a perfect model up to sampling noise, about 999 / (2 * num); log 1000 = 6.91 for one);
* ``readable``: share of samples whose three channels all have classifier confidence > 0.9.

``readable`` alone is no quality measure: the classifier is confident on some non-digits too
(an untrained G's gray noise reads as one digit at > 0.9), so read it beside modes and KL.
The baseline is ``--num`` real stacked test-set images through the same reader. The issue's
targets: >= 990 modes, KL <= 0.1, readable >= 85 % of the real share.

    python bench/stacked_mnist.py                                       # dcgan, slow: 15 min each
    python bench/stacked_mnist.py --variants dcgan,slow,r3gan
    python bench/stacked_mnist.py --images 2000 --budget 3 --num 500    # a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import train_interleaved  # bench/interleave.py

from gan.io import save_grid
from gan.sampling import sample
from training.config import config_from_options
from training.data import load_mnist
from training.loop import Trainer
from training.metrics.classifier import load_classifier
from training.metrics.stacked import NUM_MODES, count_modes, stack_digits
from training.runtime import configure_torch

#: The models take 28 px RGB (gan/models.py SUPPORTED_RESOLUTIONS, SUPPORTED_CHANNELS): no padding.
SIZE = 28
HELDOUT = 2000

#: name -> training options over the defaults: the same data and seconds for each.
#: ``slow``: Adam 2e-4 (0.5, 0.999), the recipe before the MNIST search (docs/training.md).
VARIANTS: dict[str, dict[str, Any]] = {
    "dcgan": {"recipe": "dcgan"},
    "slow": {"recipe": "dcgan", "lr_g": 2e-4, "lr_d": 2e-4, "beta2": 0.999},
    "r3gan": {"recipe": "r3gan"},
    "r3gan-small": {"recipe": "r3gan-small"},
    # Half the widths: about 2.6x the steps per second on this CPU (bench/augment_folder.py).
    "dcgan-w32": {"recipe": "dcgan", "g_width": 32, "d_width": 32},
    # Half the batch as well: about 1.6x the steps again (bench/augment_folder.py, 2026-12-07).
    "dcgan-w32-b32": {"recipe": "dcgan", "g_width": 32, "d_width": 32, "batch_size": 32},
}
TARGETS = {"modes": 990, "kl": 0.1, "readable_vs_real": 0.85}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--images", type=int, default=60000, help="stacked training images (60000)")
    p.add_argument("--budget", type=float, default=900.0, help="training seconds per model (900)")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per turn (5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=26000, help="samples read per model (26000)")
    p.add_argument("--data-dir", type=Path, default=None, help="the MNIST IDX files")
    p.add_argument("--classifier", type=Path, default=None, help="default: the shipped one")
    p.add_argument("--out", type=Path, default=Path("runs/bench-stacked"))
    p.add_argument(
        "--variants",
        default="dcgan,slow",
        help=f"comma-separated, of {', '.join(VARIANTS)} (default: dcgan,slow)",
    )
    args = p.parse_args()
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    configure_torch(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(args.classifier)

    train_digits, test_digits = (
        load_mnist(args.data_dir, "train"),
        load_mnist(args.data_dir, "test"),
    )
    data = stack_digits(train_digits, args.images, args.seed)
    held = stack_digits(test_digits, HELDOUT, args.seed + 1, name="held-out")
    data.info["heldout_source"] = f"{HELDOUT} stacked MNIST test-set digits (never trained on)"
    # The reader's baseline: --num real stacked test-set images (a draw of their own).
    real_images = stack_digits(test_digits, args.num, args.seed + 2).images
    save_grid(real_images[:64], args.out / "real-samples.png", nrow=8)
    real = count_modes(classifier, real_images)
    print(
        f"stacked MNIST: {len(data)} training images, {len(held)} held out; {args.num} real "
        f"test-set images read: {real}",
        flush=True,
    )

    trainers: dict[str, Trainer] = {}
    for name in names:
        options: dict[str, Any] = {
            "seed": args.seed,
            "steps": 10**9,
            "log_every": 10**9,
            "resolution": SIZE,
            "channels": 3,
            **VARIANTS[name],
        }
        cfg = config_from_options(options)
        trainers[name] = Trainer(cfg, data, args.out / name, heldout=held, progress=False)
        trainers[name].out.mkdir(parents=True, exist_ok=True)
    print(f"training {', '.join(names)}, {args.budget:.0f} s each, interleaved", flush=True)
    wall = train_interleaved(trainers, args.budget, args.slice)

    rows: dict[str, Any] = {"real": real}
    for name, t in trainers.items():
        images = sample(t.export_generator(), t.mc.z_dim, seed=0, n=args.num)
        save_grid(images[:64], args.out / f"{name}-samples.png", nrow=8)
        r = count_modes(classifier, images)
        r["readable_vs_real"] = r["readable"] / real["readable"] if real["readable"] else None
        rows[name] = {"steps": t.step, **r}
        print(f"{name}: {rows[name]}", flush=True)

    lines = [
        f"Stacked MNIST ({NUM_MODES} modes): {len(data)} training images, {args.budget:.0f} s of "
        f"training steps per model interleaved in {args.slice:.0f} s turns ({args.threads} torch "
        f"threads, wall {wall / 60:.0f} min); {args.num} samples read per model, the real row "
        f"{args.num} stacked test-set images. Targets: >= {TARGETS['modes']} modes, KL <= "
        f"{TARGETS['kl']}, readable >= {100 * TARGETS['readable_vs_real']:.0f} % of real.",
        "",
        "| variant | iterations | modes (of 1000) | KL | readable | readable / real |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        ratio = r.get("readable_vs_real", 1.0 if name == "real" else None)
        lines.append(
            f"| {name} | {r.get('steps', '–')} | {r['modes']} | {r['kl']:.3f} | "
            f"{100 * r['readable']:.1f} % | {'–' if ratio is None else f'{ratio:.2f}'} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / "summary.md").write_text(table + "\n")
    summary = {
        "wall_s": wall,
        "budget_s": args.budget,
        "images": len(data),
        "num": args.num,
        "threads": torch.get_num_threads(),
        "targets": TARGETS,
        "rows": rows,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
