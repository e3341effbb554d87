"""How a trained folder model's samples read under each way of drawing them: plain, truncated
latents, and D-guided rejection (``drs``, on D as trained and on D refit with G frozen).

Reads a checkpoint that ``bench/augment_folder.py`` trained on its synthetic discs-and-squares
folder (``RUN/VARIANT/checkpoints/latest``) with the same exact shape reader, for the same image
seeds and classes, so every row differs only in how the images were drawn:

* ``plain`` and ``plain t=T``: the latent as drawn, or with components beyond +-T redrawn
  (``gan-sample --truncation T``);
* ``drs keep=K``: discriminator rejection sampling (``gan-sample --method drs``) with D
  calibrated on the folder's held-out images (``gan-calibrate``);
* ``refit drs keep=K``: the same with D first trained on for ``--refit`` steps against the frozen
  G (``gan-calibrate --refit``), written as a new checkpoint beside the run
  (``RUN/VARIANT/refit``, reused while it holds a refit of ``--refit`` steps).

    python bench/folder_samplers.py --run runs/trunc300 --variant cond-diff-w32-ct
    python bench/folder_samplers.py --run /tmp/af-smoke --variant cond-diff-w32-ct --num 64 \\
        --refit 5 --methods "plain;plain t=0.7;drs keep=0.5;refit drs keep=0.5"   # a smoke test
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from augment_folder import SIZE, read_all, real_row, shown

from gan.checkpoint import load_checkpoint
from gan.io import save_grid
from gan.samplers import parse_options
from gan.samplers.dispatch import Models, sample
from training.data import load_training_data
from training.export import calibrate_checkpoint
from training.metrics.anyfeatures import NAME as RANDOM_CNN
from training.metrics.anyfeatures import RandomFeatures, compare
from training.refit import refit_checkpoint
from training.runtime import configure_torch

DEFAULT_METHODS = "plain;plain t=1;plain t=0.7;plain t=0.5;drs keep=0.5;refit drs keep=0.5"


def parse_method(text: str) -> tuple[bool, str, dict[str, float], float | None]:
    """``"refit drs keep=0.5"`` -> (refit, method, options, truncation)."""
    words = text.split()
    refit = bool(words) and words[0] == "refit"
    words = words[1:] if refit else words
    if not words:
        raise SystemExit(f"--methods: {text!r} names no method")
    method, options, truncation = words[0], {}, None
    for word in words[1:]:
        name, _, value = word.partition("=")
        if name == "t":
            truncation = float(value)
        else:
            options[name] = float(value)
    return refit, method, options, truncation


def _refit_with(path: Path, steps: int) -> bool:
    """Whether ``path`` already holds this run's refit with ``steps`` steps (then reused)."""
    if not (path / "config.json").exists():
        return False
    refit = load_checkpoint(path).config.refit
    return refit is not None and refit.steps == steps


def _space(m: dict[str, float]) -> str:
    """FID and precision / recall cells of one :func:`compare` result."""
    return f"{m['fid']:.3f} | {m['precision']:.3f} / {m['recall']:.3f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--run", type=Path, required=True, help="bench/augment_folder.py's --out")
    p.add_argument("--variant", required=True, help="the variant trained there")
    p.add_argument("--num", type=int, default=2000, help="samples read per row (2000)")
    p.add_argument("--methods", default=DEFAULT_METHODS, help=f"';'-separated ({DEFAULT_METHODS})")
    p.add_argument("--refit", type=int, default=2000, help="refit steps for 'refit' rows (2000)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--palette", type=int, default=0, help="the run's --palette (mode coverage)")
    args = p.parse_args()
    configure_torch(args.threads)

    source = args.run / args.variant / "checkpoints" / "latest"
    ckpt = load_checkpoint(source)
    seed = ckpt.config.seed or 0
    data, held = load_training_data(
        "folder",
        args.run / "shapes",
        SIZE,
        3,
        cache_dir=args.run / "cache",
        seed=seed,
        progress=False,
    )
    k = ckpt.model_config.num_classes
    real = real_row(data.images, args.palette)  # ImageData holds uint8 images
    # A second space, which knows nothing of the reader's rules: the random CNN that measures
    # folder runs (gan-eval), each row's samples against the training images, beside one half
    # of the training images against the other.
    net = RandomFeatures()
    real_feats = net.features(data.images)
    real["random_cnn"] = compare(real_feats[::2], real_feats[1::2])
    print(f"real: {shown(real)}", flush=True)
    labels = held.labels if k else None
    rows: dict[str, Any] = {}
    refit_dir = args.run / args.variant / "refit"
    for text in [m.strip() for m in args.methods.split(";") if m.strip()]:
        refit, method, values, truncation = parse_method(text)
        if refit and not _refit_with(refit_dir, args.refit):
            shutil.rmtree(refit_dir, ignore_errors=True)
            started = time.perf_counter()
            refit_checkpoint(
                source,
                refit_dir,
                data.images,
                data.labels if k else None,
                held.images,
                labels,
                steps=args.refit,
                num=len(held),
                calibration_seed=3_000_000_000,
                progress=False,
            )
            print(f"refit {args.refit} steps: {time.perf_counter() - started:.0f} s", flush=True)
        path = refit_dir if refit else source
        if method != "plain" and not refit and load_checkpoint(path).config.calibration is None:
            calibrate_checkpoint(path, held.images, labels, num=len(held))
        models = Models.of(load_checkpoint(path))
        started = time.perf_counter()
        result = sample(
            models, parse_options(method, values), seed=0, n=args.num, truncation=truncation
        )
        seconds = time.perf_counter() - started
        asked = [s % k for s in range(args.num)] if k else None
        rows[text] = {
            **shown(read_all(result.images, asked, real, args.palette)),
            "random_cnn": compare(real_feats, net.features(result.images)),
            "seconds": seconds,
        }
        save_grid(
            result.images[:64], args.run / f"{args.variant}-{text.replace(' ', '_')}.png", nrow=8
        )
        print(f"{text}: {rows[text]}", flush=True)

    plain = rows.get("plain", {}).get("seconds")
    lines = [
        f"{args.variant} ({source}, step {ckpt.config.step}), {args.num} samples per "
        f"row, image seeds 0..{args.num - 1}; D calibrated on the {len(held)} held-out images; "
        f"FID, precision and recall in {RANDOM_CNN}'s features against the {len(data)} training "
        "images.",
        "",
        "| drawn by | clean shapes | squares among clean (data: 50 %) | the class asked for "
        "| variety gap | hue bins (of 12) | random-CNN FID | precision / recall | x plain time |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| real images (half vs half) | {100 * real['clean_share']:.1f} % | "
        f"{100 * real['square_share_of_clean']:.1f} % | – | "
        f"{real['variety_gap']:.2f} | {real['hue_bins']} | {_space(real['random_cnn'])} | – |",
    ]
    for text, r in rows.items():
        sq, asked_share = r["square_share_of_clean"], r.get("as_asked_share")
        ratio = r["seconds"] / plain if plain else 0.0
        gap = f"{r['variety_gap']:.2f}" if r.get("variety_gap") is not None else "–"
        lines.append(
            f"| `{text}` | {100 * r['clean_share']:.1f} % | "
            f"{'–' if sq is None else f'{100 * sq:.1f} %'} | "
            f"{'–' if asked_share is None else f'{100 * asked_share:.1f} %'} | "
            f"{gap} | {r.get('hue_bins', '–')} | {_space(r['random_cnn'])} | "
            f"{'–' if not plain else f'{ratio:.1f}'} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    (args.run / f"{args.variant}-samplers.md").write_text(table + "\n")
    (args.run / f"{args.variant}-samplers.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
