"""Does the folder feature space rank MNIST runs as the MNIST classifier does? (issue 19)

The folder feature space (a fixed-seed random CNN, :mod:`training.metrics.anyfeatures`) is
validated on corrupted real images (``tests/training/metrics/test_anyfeatures.py``); this
script checks the other half of the issue: on MNIST, its ranking of real *runs* must agree with
the ranking by the project's MNIST classifier, the space ``gan-eval`` measures in.

The runs, all 28 px gray, of clearly and subtly different quality:

* the bundled checkpoints: ``checkpoints/mnist`` (conditional GAN, the best), the same model
  with truncated latents (``--truncations``: less diversity, so recall must drop),
  ``checkpoints/mnist-gan-small``, ``checkpoints/mnist-vae`` (a VAE decoder: blurry) and
  ``checkpoints/mnist-ebm`` (Langevin search on D's logit over the pixels; ``--no-ebm`` skips
  it: ~15-30 ms an image on a core);
* a quality ladder: one short GAN run of the default recipe trained by the script, its EMA
  generator saved at each of ``--train-steps`` (kept under ``--out``/ladder and reused by a
  later run with the same seed unless ``--retrain``).

Each run's ``--num`` samples (image seeds 0.., as ``gan-sample``) are measured in both spaces:

* **classifier**: the project's :class:`~training.metrics.evaluator.Evaluator`, exactly as
  ``gan-eval`` (reference: the 10,000 MNIST test images; real-vs-real: ``--num`` random
  training images against them);
* **anyfeatures**: as ``gan-eval`` measures a folder run (``training/metrics/folder_eval.py``):
  reference a seeded subset of max(5,000, ``--num``) MNIST *training* images, real-vs-real
  ``--num`` random held-out *test* images against it. FID and KID use the whole reference;
  precision and recall a same-size reference subset, as the Evaluator does (k-NN radii depend
  on the set size).

Reported: Spearman rank correlation between the spaces of FID, KID, precision and recall over
the runs, the share of run pairs both spaces order the same way (pairwise concordance), and
every pair they order differently, with its numbers in both spaces. A markdown table
(``summary.md``), ``summary.json`` and ``fid_scatter.png`` (classifier FID against anyfeatures
FID, log axes, one labelled point per run) go to ``--out``.

    python bench/feature_agreement.py                  # 5,000 samples, ladder to 2,000 steps
    python bench/feature_agreement.py --num 200 --train-steps 20,60 --no-ebm --kid-subsets 5
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gan.checkpoint import load_checkpoint
from gan.samplers.dispatch import Models
from gan.samplers.dispatch import sample as dispatch_sample
from gan.samplers.plain import PlainOptions
from training.config import config_from_options
from training.data import load_mnist, load_training_data
from training.loop import Trainer
from training.metrics.anyfeatures import NAME, RandomFeatures
from training.metrics.evaluator import Evaluator, digit_labels
from training.metrics.metrics import (
    DEFAULT_K,
    fid_from_features,
    kid_from_features,
    precision_recall,
)
from training.runtime import configure_torch

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "checkpoints"
SPACES = ("classifier", "anyfeatures")
METRICS = ("fid", "kid", "precision", "recall")
#: Lower is better for these; higher for the others.
LOWER_IS_BETTER = {"fid", "kid"}
#: The anyfeatures reference holds at least this many training images (folder_eval's maximum).
MIN_REFERENCE = 5000
REAL = "real (held out)"


@dataclass(frozen=True)
class Run:
    """One set of samples to measure: a checkpoint, optionally with truncated latents."""

    name: str
    checkpoint: Path
    what: str
    truncation: float | None = None


def bundled_runs(truncations: list[float], with_ebm: bool) -> list[Run]:
    runs = [Run("mnist", CHECKPOINTS / "mnist", "bundled conditional GAN (the best)")]
    runs += [
        Run(
            f"mnist-trunc{t:g}",
            CHECKPOINTS / "mnist",
            f"bundled conditional GAN, latents truncated to +-{t:g} (less diversity)",
            truncation=t,
        )
        for t in truncations
    ]
    runs += [
        Run("mnist-gan-small", CHECKPOINTS / "mnist-gan-small", "bundled small GAN"),
        Run("mnist-vae", CHECKPOINTS / "mnist-vae", "bundled VAE decoder (blurry)"),
    ]
    if with_ebm:
        runs.append(
            Run("mnist-ebm", CHECKPOINTS / "mnist-ebm", "bundled EBM (Langevin on D's logit)")
        )
    return runs


def ladder_runs(
    steps: list[int], out: Path, seed: int, threads: int, data_dir: Path | None, retrain: bool
) -> list[Run]:
    """Train the default recipe (unconditional) to ``max(steps)``, saving a checkpoint (its EMA
    generator, BatchNorm re-estimated: ``Trainer.export_generator``) at each of ``steps``;
    reuse those of an earlier run with the same seed."""
    steps = sorted(set(steps))
    folder = out / "ladder"
    paths = {s: folder / "checkpoints" / f"step-{s:08d}" for s in steps}

    def reusable(path: Path) -> bool:
        if not (path / "config.json").is_file():
            return False
        cfg = json.loads((path / "config.json").read_text())
        return cfg.get("training", {}).get("seed") == seed

    if not retrain and all(reusable(p) for p in paths.values()):
        print(f"ladder: reusing the checkpoints of {folder} (steps {steps}; --retrain to redo)")
    else:
        options: dict[str, Any] = {
            "seed": seed,
            "steps": steps[-1],
            "log_every": 10**9,
            "keep_last": len(steps) + 1,
            "threads": threads,
        }
        cfg = config_from_options(options)
        data, held = load_training_data(
            "mnist", data_dir, cfg.model.resolution, cfg.model.channels, seed=seed, progress=False
        )
        trainer = Trainer(cfg, data, folder, heldout=held, progress=False)
        started = time.perf_counter()
        for target in steps:
            while trainer.step < target:
                trainer.train_step()
            saved = trainer.save_checkpoint()
            assert saved == paths[target], (saved, paths[target])
            print(
                f"ladder: step {target} saved ({time.perf_counter() - started:.0f} s)", flush=True
            )
    return [
        Run(f"ladder-{s}", paths[s], f"default recipe, EMA generator after {s} steps")
        for s in steps
    ]


def draw(run: Run, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """``n`` uint8 samples of a run (image seeds ``seed``..), the digit each was asked to show
    (a conditional model) and the seconds it took."""
    ckpt = load_checkpoint(run.checkpoint)
    drawn = dispatch_sample(
        Models.of(ckpt), PlainOptions(), seed=seed, n=n, truncation=run.truncation, chunk=500
    )
    return drawn.images, digit_labels(ckpt.config.classes, seed, n), drawn.seconds


class AnyFeatureSpace:
    """The folder feature space's reference (training images) and its measurements."""

    def __init__(
        self, num: int, seed: int, data_dir: Path | None, kid_subsets: int, k: int = DEFAULT_K
    ) -> None:
        self.net = RandomFeatures()
        self.kid_subsets = kid_subsets
        self.k = k
        train = load_mnist(data_dir, "train").images
        test = load_mnist(data_dir, "test").images
        if num > len(test):
            raise SystemExit(f"--num {num}: the held-out real set holds only {len(test)} images")
        gen = torch.Generator().manual_seed(seed)
        ref_idx = torch.randperm(len(train), generator=gen)[: max(MIN_REFERENCE, num)]
        held_idx = torch.randperm(len(test), generator=gen)[:num]
        with torch.inference_mode():
            self.reference = self.net.features(train[ref_idx])
            self.heldout = self.net.features(test[held_idx])
        self.num_reference = len(ref_idx)

    def measure(self, images: torch.Tensor | None = None) -> dict[str, float]:
        """FID, KID, precision and recall of images (None: the held-out reals) against the
        reference."""
        if images is None:
            feats = self.heldout
        else:
            with torch.inference_mode():
                feats = self.net.features(images)
        kid, kid_std = kid_from_features(self.reference, feats, num_subsets=self.kid_subsets)
        precision, recall = precision_recall(self.reference[: len(feats)], feats, k=self.k)
        return {
            "fid": fid_from_features(self.reference, feats),
            "kid": kid,
            "kid_std": kid_std,
            "precision": precision,
            "recall": recall,
        }


# ---- agreement ---------------------------------------------------------------------------


def ranks(values: list[float]) -> np.ndarray:
    """Ranks 1..n of values (ties: their mean rank)."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tied = x == v
        r[tied] = r[tied].mean()
    return r


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (Pearson's on the ranks; nan below 3 values)."""
    if len(a) < 3:
        return float("nan")
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = math.sqrt(float(ra @ ra) * float(rb @ rb))
    return float(ra @ rb / denom) if denom > 0 else float("nan")


def pairs_ordered(a: list[float], b: list[float]) -> tuple[int, list[tuple[int, int]]]:
    """(run pairs, the pairs (i, j) that a and b order differently; a tie in one space and
    not in the other counts as different)."""
    differ = [
        (i, j)
        for i, j in itertools.combinations(range(len(a)), 2)
        if np.sign(a[i] - a[j]) != np.sign(b[i] - b[j])
    ]
    return len(a) * (len(a) - 1) // 2, differ


def agreement(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Spearman, concordance and the discordant pairs of each metric over the runs."""
    names = list(rows)
    out: dict[str, Any] = {}
    for metric in METRICS:
        a = [rows[n]["classifier"][metric] for n in names]
        b = [rows[n]["anyfeatures"][metric] for n in names]
        total, differ = pairs_ordered(a, b)
        out[metric] = {
            "spearman": spearman(a, b),
            "pairs": total,
            "concordance": (total - len(differ)) / total if total else float("nan"),
            "discordant": [
                {
                    "runs": [names[i], names[j]],
                    "classifier": [a[i], a[j]],
                    "anyfeatures": [b[i], b[j]],
                }
                for i, j in differ
            ],
        }
    return out


# ---- output ------------------------------------------------------------------------------


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) >= 0.01 or v == 0 else f"{v:.2e}"


def markdown(rows: dict[str, dict[str, Any]], real: dict[str, Any], agree: dict[str, Any]) -> str:
    head = (
        "| run | FID cls | FID any | KID cls | KID any | precision cls | precision any "
        "| recall cls | recall any | what |"
    )
    lines = [head, "|" + "---|" * 10]
    by_fid = sorted(rows, key=lambda n: rows[n]["classifier"]["fid"])
    for name in [REAL, *by_fid]:
        r = real if name == REAL else rows[name]
        cells = [
            _fmt(r[space][m]) if m in LOWER_IS_BETTER else f"{r[space][m]:.3f}"
            for m in METRICS
            for space in SPACES
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['what']} |")
    lines += [
        "",
        "| metric | Spearman (runs) | pairs ordered alike | pairs ordered differently |",
        "|---|---|---|---|",
    ]
    for metric in METRICS:
        a = agree[metric]
        differ = "; ".join(
            f"{d['runs'][0]} vs {d['runs'][1]}: cls {_fmt(d['classifier'][0])} / "
            f"{_fmt(d['classifier'][1])}, any {_fmt(d['anyfeatures'][0])} / "
            f"{_fmt(d['anyfeatures'][1])}"
            for d in a["discordant"]
        )
        lines.append(
            f"| {metric} | {a['spearman']:.3f} | {a['pairs'] - len(a['discordant'])}/"
            f"{a['pairs']} ({100 * a['concordance']:.0f} %) | {differ or 'none'} |"
        )
    return "\n".join(lines)


def scatter(
    rows: dict[str, dict[str, Any]], real: dict[str, Any], rho: float, path: Path, num: int
) -> None:
    """Classifier FID (x) against anyfeatures FID (y), log axes, a labelled point per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 6))
    for name, r in rows.items():
        x, y = r["classifier"]["fid"], r["anyfeatures"]["fid"]
        ax.scatter([x], [y], color="tab:blue", zorder=3)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    x, y = real["classifier"]["fid"], real["anyfeatures"]["fid"]
    ax.scatter([x], [y], color="tab:green", marker="*", s=140, zorder=3)
    ax.annotate("real vs real", (x, y), textcoords="offset points", xytext=(6, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FID, MNIST classifier features (gan-eval)")
    ax.set_ylabel(f"FID, {NAME} features (folder runs)")
    ax.set_title(f"{len(rows)} MNIST runs, {num} samples each: Spearman {rho:.3f}")
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _floats(text: str, kind: type) -> list[Any]:
    return [kind(v) for v in text.split(",") if v.strip()]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--num", type=int, default=5000, help="samples per run (5000)")
    p.add_argument(
        "--train-steps",
        default="50,150,400,1000,2000",
        help="the ladder's checkpoints, comma-separated steps (50,150,400,1000,2000); '' none",
    )
    p.add_argument(
        "--truncations", default="1.0,0.5", help="truncated variants of checkpoints/mnist"
    )
    p.add_argument("--no-ebm", action="store_true", help="skip checkpoints/mnist-ebm")
    p.add_argument("--retrain", action="store_true", help="train the ladder even if saved")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets in both spaces")
    p.add_argument("--seed", type=int, default=0, help="image seeds seed..; ladder's seed")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("runs/bench-feature-agreement"))
    args = p.parse_args()
    configure_torch(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    timings: dict[str, float] = {}

    runs = bundled_runs(_floats(args.truncations, float), not args.no_ebm)
    steps = _floats(args.train_steps, int)
    if steps:
        t0 = time.perf_counter()
        runs += ladder_runs(steps, args.out, args.seed, args.threads, args.data_dir, args.retrain)
        timings["ladder_training"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    evaluator = Evaluator(data_dir=args.data_dir, kid_subsets=args.kid_subsets)
    anyspace = AnyFeatureSpace(args.num, args.seed, args.data_dir, args.kid_subsets)
    real_cls = evaluator.baseline(args.num, args.seed)
    real: dict[str, Any] = {
        "what": "real vs real: classifier, random training images vs the test set; "
        "anyfeatures, random test images vs training images",
        "classifier": {m: real_cls[m] for m in (*METRICS, "kid_std")},
        "anyfeatures": anyspace.measure(None),
    }
    timings["references"] = time.perf_counter() - t0
    print(
        f"references ready ({timings['references']:.0f} s): classifier FID real-vs-real "
        f"{real['classifier']['fid']:.3f}, anyfeatures {real['anyfeatures']['fid']:.3f}",
        flush=True,
    )

    rows: dict[str, dict[str, Any]] = {}
    for run in runs:
        t0 = time.perf_counter()
        images, labels, sample_s = draw(run, args.num, args.seed)
        cls = evaluator.evaluate_images(images, seed=args.seed, labels=labels, with_baseline=False)
        m = cls["metrics"]
        rows[run.name] = {
            "what": run.what,
            "checkpoint": str(run.checkpoint),
            "truncation": run.truncation,
            "classifier": {
                **{k: m[k] for k in (*METRICS, "kid_std", "coverage_entropy")},
                **({"label_accuracy": m["label_accuracy"]} if "label_accuracy" in m else {}),
            },
            "anyfeatures": anyspace.measure(images),
            "sample_seconds": round(sample_s, 2),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        r = rows[run.name]
        print(
            f"{run.name}: FID classifier {r['classifier']['fid']:.3f}, anyfeatures "
            f"{r['anyfeatures']['fid']:.3f}; recall {r['classifier']['recall']:.3f} / "
            f"{r['anyfeatures']['recall']:.3f} ({r['seconds']:.0f} s, sampling "
            f"{sample_s:.1f} s)",
            flush=True,
        )

    agree = agreement(rows)
    table = markdown(rows, real, agree)
    wall = time.perf_counter() - started
    header = (
        f"{len(rows)} MNIST runs, {args.num} samples each (image seeds {args.seed}..), measured "
        f"in the MNIST classifier's features (cls; reference the 10,000 test images) and in "
        f"{NAME} (any; reference {anyspace.num_reference} training images); "
        f"{args.threads} threads, wall {wall / 60:.1f} min."
    )
    print("\n" + header + "\n\n" + table)
    (args.out / "summary.md").write_text(header + "\n\n" + table + "\n")
    scatter(rows, real, agree["fid"]["spearman"], args.out / "fid_scatter.png", args.num)
    (args.out / "summary.json").write_text(
        json.dumps(
            {
                "settings": {
                    "num": args.num,
                    "seed": args.seed,
                    "train_steps": steps,
                    "truncations": _floats(args.truncations, float),
                    "ebm": not args.no_ebm,
                    "kid_subsets": args.kid_subsets,
                    "threads": args.threads,
                    "feature_space": NAME,
                    "anyfeatures_reference": f"{anyspace.num_reference} random MNIST train images",
                    "classifier_reference": "the 10,000 MNIST test images",
                },
                "real_vs_real": real,
                "runs": rows,
                "agreement": agree,
                "timings_s": {k: round(v, 1) for k, v in timings.items()},
                "wall_s": round(wall, 1),
            },
            indent=2,
        )
    )
    print(f"\nsummary.md, summary.json and fid_scatter.png in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
