"""Does refitting D make D-guided sampling better? DRS on the original and on the refit D.

DRS reads D's calibrated logit as the log density ratio of data over G; ``gan-calibrate
--refit`` first trains D on against the frozen G (the DRS paper's recipe). This script makes
the refit copy of a checkpoint (``--refit-checkpoint``, default ``OUT/refit-checkpoint``;
reused when it already holds a refit of this checkpoint with these options), then draws
``--num`` images for each of ``--seeds`` seeds with ``plain`` (the same images for both, G is
the same) and with ``drs`` for the original and for the refit checkpoint, on the same seeds,
and measures FID, precision and recall against the MNIST test set in independent feature
spaces:

* ``classifier``: the project's MNIST classifier (what ``gan-eval`` and ``bench/d_guided.py``
  report),
* ``random-cnn``: the fixed random CNN of :mod:`training.metrics.anyfeatures` (no training,
  nothing in common with the classifier),
* ``classifier-b``: a second MNIST classifier of another architecture and seed, trained once
  into ``--second-classifier`` (default ``OUT/classifier-b``, about two minutes on two cores)
  unless ``--no-second-classifier``.

It reports the time per image of each sampler, D's held-out logistic loss before and after the
refit, each calibration's log-loss, and a markdown table with drs/plain FID ratios per space;
the target: drs at <= 0.9x plain's FID in every space at <= 3x plain's time.

    python bench/d_refit.py                                      # bundled model, 10k x 3 seeds
    python bench/d_refit.py --num 64 --seeds 1 --refit-steps 5 --calibration-num 200 \\
        --reference-num 500 --no-second-classifier --out /tmp/d-refit-smoke  # smoke, seconds
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from gan.checkpoint import Checkpoint, is_checkpoint, load_checkpoint, read_checkpoint_config
from gan.errors import UserError
from gan.io import write_json_atomic
from gan.samplers import calibration_missing, parse_options
from gan.samplers.dispatch import Models, sample
from training.data import ImageData, load_training_data
from training.metrics.anyfeatures import NAME as RANDOM_CNN_NAME
from training.metrics.anyfeatures import RandomFeatures
from training.metrics.classifier import ClassifierArch, load_classifier, train_classifier
from training.metrics.evaluator import Evaluator, sampling_record
from training.metrics.metrics import DEFAULT_K, fid_from_features, precision_recall
from training.refit import REFIT_BATCH, REFIT_LR, refit_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SEED_STRIDE = 1_000_000  # seed k draws the image seeds k * SEED_STRIDE + 0 .. num - 1
TARGET = {"fid_ratio": 0.9, "time_ratio": 3.0}
#: The second classifier: another architecture and seed than the shipped one (32, 64, 64 ->
#: 128 features, seed 0), so its feature space is learnt independently.
SECOND_ARCH = ClassifierArch(widths=(16, 32, 48), feature_dim=64, dropout=0.1)
SECOND_SEED = 1
SECOND_EPOCHS = 2


class Space:
    """A feature space: FID, precision and recall of images against the reference."""

    def __init__(self, name: str, describe: str) -> None:
        self.name = name
        self.describe = describe

    def measure(self, images: torch.Tensor, seed: int) -> dict[str, float]:
        raise NotImplementedError


class ClassifierSpace(Space):
    """The shared evaluator's metrics in a classifier's features."""

    def __init__(self, name: str, evaluator: Evaluator) -> None:
        c = evaluator.classifier
        super().__init__(
            name,
            f"{c.path} ({c.feature_dim} features, test accuracy {c.test_accuracy:.4f})",
        )
        self.evaluator = evaluator

    def measure(self, images: torch.Tensor, seed: int) -> dict[str, float]:
        m = self.evaluator.evaluate_images(images, seed=seed, with_baseline=False)["metrics"]
        return {k: float(m[k]) for k in ("fid", "precision", "recall")}


class RandomCNNSpace(Space):
    """FID, precision and recall in :mod:`training.metrics.anyfeatures`' random CNN."""

    def __init__(self, reference: torch.Tensor) -> None:
        super().__init__("random-cnn", f"{RANDOM_CNN_NAME} (fixed random weights, 960 features)")
        self.net = RandomFeatures()
        self.real = self.net.features(reference)

    def measure(self, images: torch.Tensor, seed: int) -> dict[str, float]:
        feats = self.net.features(images)
        precision, recall = precision_recall(self.real, feats, k=DEFAULT_K)
        return {
            "fid": fid_from_features(self.real, feats),
            "precision": float(precision),
            "recall": float(recall),
        }


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt(pair: tuple[float, float], digits: int) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std else "")


# --------------------------------------------------------------------------------------------
# The refit checkpoint and the second classifier
# --------------------------------------------------------------------------------------------


def refit_copy(
    args: argparse.Namespace, source: Checkpoint, train: ImageData, test: ImageData
) -> Path:
    """The refit checkpoint: reused when ``--refit-checkpoint`` already holds a refit of this
    source with these options, else made there (the folder must be new or empty)."""
    path: Path = args.refit_checkpoint or args.out / "refit-checkpoint"
    if is_checkpoint(path):
        cfg = read_checkpoint_config(path)
        r = cfg.refit
        if (
            r is not None
            and r.source_model_id == source.model_id
            and (r.steps, r.lr, r.batch) == (args.refit_steps, args.refit_lr, args.refit_batch)
            and cfg.calibration is not None
            and cfg.calibration.num_fake == args.calibration_num
        ):
            print(f"reusing the refit checkpoint {path} ({cfg.model_id})", file=sys.stderr)
            return path
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(
            f"{path} holds something else than a refit of {source.model_id} with these options: "
            "remove it or give another --refit-checkpoint"
        )
    print(
        f"refitting D for {args.refit_steps} steps into {path} (lr {args.refit_lr:g}, batch "
        f"{args.refit_batch}) ...",
        file=sys.stderr,
    )
    refit_checkpoint(
        source.path,
        path,
        train.images,
        train.labels,
        test.images,
        test.labels,
        steps=args.refit_steps,
        lr=args.refit_lr,
        batch=args.refit_batch,
        num=args.calibration_num,
        calibration_seed=3_000_000_000,
        train_source="MNIST train set",
        real_source="MNIST test set (never trained on)",
        progress=not args.quiet,
    )
    return path


def second_classifier_space(args: argparse.Namespace, reference: torch.Tensor) -> Space:
    directory: Path = args.second_classifier or args.out / "classifier-b"
    if not (directory / "config.json").is_file():
        print(
            f"training the second classifier into {directory} ({SECOND_EPOCHS} epochs, seed "
            f"{SECOND_SEED}, widths {SECOND_ARCH.widths}) ...",
            file=sys.stderr,
        )
        train_classifier(
            args.data_dir,
            directory,
            epochs=SECOND_EPOCHS,
            seed=SECOND_SEED,
            threads=args.threads,
            arch=SECOND_ARCH,
            command=f"bench/d_refit.py (second classifier: {SECOND_ARCH.to_dict()['widths']})",
            progress=not args.quiet,
        )
    classifier = load_classifier(directory)
    if classifier.model.arch == ClassifierArch():
        raise UserError(
            f"{directory} has the shipped classifier's architecture: give a classifier of "
            "another architecture, or remove the folder to train one"
        )
    return ClassifierSpace("classifier-b", Evaluator(classifier, reference=reference))


# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


def measure(
    label: str,
    models: Models,
    method: str,
    spaces: list[Space],
    args: argparse.Namespace,
) -> dict[str, Any]:
    options = parse_options(
        method, {} if method == "plain" else {"keep": args.keep, "max_proposals": args.proposals}
    )
    runs = []
    for k in range(args.seeds):
        seed = k * SEED_STRIDE
        result = sample(models, options, seed=seed, n=args.num, chunk=args.chunk)
        record = sampling_record(result)
        metrics = {space.name: space.measure(result.images, k) for space in spaces}
        runs.append({"seed": seed, "metrics": metrics, **record})
        shown = ", ".join(f"{name} FID {m['fid']:.2f}" for name, m in metrics.items())
        print(
            f"  {label} {method} seed {seed}: {shown}; "
            f"{record['cost_per_image']['ms']:.3f} ms/image",
            file=sys.stderr,
        )
    rates = [r["acceptance_rate"] for r in runs if r["acceptance_rate"] is not None]
    return {
        "checkpoint": label,
        "method": method,
        "options": {}
        if method == "plain"
        else {"keep": args.keep, "max_proposals": args.proposals},
        "runs": runs,
        "ms": statistics.fmean(r["cost_per_image"]["ms"] for r in runs),
        "forwards": statistics.fmean(r["cost_per_image"]["forwards"] for r in runs),
        "acceptance_rate": statistics.fmean(rates) if rates else None,
        "metrics": {
            space.name: {
                key: mean_std([r["metrics"][space.name][key] for r in runs])
                for key in ("fid", "precision", "recall")
            }
            for space in spaces
        },
    }


def compare(rows: list[dict[str, Any]], spaces: list[Space]) -> None:
    """Each drs row's FID ratio to plain on the same seeds, per space, and its time ratio."""
    plain = next(r for r in rows if r["method"] == "plain")
    base = {r["seed"]: r["metrics"] for r in plain["runs"]}
    for row in rows:
        row["fid_ratio"] = {
            space.name: mean_std(
                [
                    run["metrics"][space.name]["fid"] / base[run["seed"]][space.name]["fid"]
                    for run in row["runs"]
                ]
            )
            for space in spaces
        }
        row["time_ratio"] = row["ms"] / plain["ms"] if plain["ms"] else math.nan


def verdicts(rows: list[dict[str, Any]], spaces: list[Space]) -> dict[str, dict[str, Any]]:
    out = {}
    for row in rows:
        if row["method"] == "plain":
            continue
        checks = {
            f"FID <= {TARGET['fid_ratio']}x plain ({space.name})": row["fid_ratio"][space.name][0]
            <= TARGET["fid_ratio"]
            for space in spaces
        }
        checks[f"time <= {TARGET['time_ratio']:g}x plain"] = (
            row["time_ratio"] <= TARGET["time_ratio"]
        )
        out[row["checkpoint"]] = {"checks": checks, "met": all(checks.values())}
    return out


def markdown(
    rows: list[dict[str, Any]],
    spaces: list[Space],
    meta: dict[str, Any],
    result: dict[str, Any],
) -> str:
    head = ["checkpoint", "sampler", "ms / img", "× plain time", "G+D fwd / img", "acceptance"]
    for space in spaces:
        head += [f"FID ({space.name})", "× plain", "precision", "recall"]
    lines = [
        f"Checkpoint `{meta['checkpoint']}` ({meta['model_id']}) and its refit "
        f"`{meta['refit_checkpoint']}` ({meta['refit_model_id']}: {meta['refit']['steps']} steps, "
        f"lr {meta['refit']['lr']:g}, batch {meta['refit']['batch']}); {meta['num']} samples x "
        f"{meta['seeds']} seeds (image seeds k * {SEED_STRIDE} + i), reference: "
        f"{meta['reference_num']} MNIST test images; {meta['threads']} torch threads, cpu; "
        "mean ± std over seeds. `plain` is the same images for both (G is unchanged).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        cells = [
            r["checkpoint"] if r["method"] != "plain" else "both",
            f"`{r['method']}" + "".join(f" {k}={v}" for k, v in r["options"].items()) + "`",
            f"{r['ms']:.3f}",
            f"{r['time_ratio']:.2f}",
            f"{r['forwards']:.2f}",
            "–" if r["acceptance_rate"] is None else f"{r['acceptance_rate']:.3f}",
        ]
        for space in spaces:
            m = r["metrics"][space.name]
            cells += [
                fmt(m["fid"], 2),
                "" if r["method"] == "plain" else fmt(r["fid_ratio"][space.name], 3),
                fmt(m["precision"], 3),
                fmt(m["recall"], 3),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    refit = meta["refit"]
    lines.append(
        f"D's held-out logistic loss (nats; {refit['heldout_real_images']} MNIST test images vs "
        f"{refit['heldout_fake_images']} fresh samples; a coin: 0.693): "
        f"{refit['heldout_bce_before']:.4f} original, {refit['heldout_bce_after']:.4f} refit. "
        f"Calibrated log-loss on the held-out half: {meta['calibration']['original']:.4f} "
        f"original, {meta['calibration']['refit']:.4f} refit."
    )
    lines.append("")
    for name, v in result["verdicts"].items():
        checks = ", ".join(f"{k}: {'yes' if ok else 'no'}" for k, ok in v["checks"].items())
        lines.append(
            f"Target, drs on the {name} D: {checks}. **{'met' if v['met'] else 'missed'}**."
        )
    lines.append("")
    lines.append("Feature spaces: " + "; ".join(f"{s.name}: {s.describe}" for s in spaces) + ".")
    return "\n".join(lines) + "\n"


def calibrated_nll(ckpt: Checkpoint) -> float:
    cal = ckpt.config.calibration
    assert cal is not None
    candidates = cal.raw.get("candidates", {})
    entry = candidates.get(cal.kind, {}) if isinstance(candidates, dict) else {}
    value = entry.get("nll") if isinstance(entry, dict) else None
    return float(value) if isinstance(value, (int, float)) else math.nan


def run(args: argparse.Namespace) -> int:
    if args.num < 2 or args.seeds < 1 or args.reference_num < 2:
        raise UserError("--num and --reference-num must be >= 2 and --seeds >= 1")
    torch.set_num_threads(args.threads)
    started = time.time()
    source = load_checkpoint(args.checkpoint)
    if source.config.calibration is None:
        raise calibration_missing("drs", args.checkpoint)
    mc = source.model_config
    if source.config.dataset_name != "mnist":
        raise UserError(f"{args.checkpoint} was not trained on MNIST: this benchmark is MNIST's")
    progress = not args.quiet
    train, test = load_training_data(
        "mnist", args.data_dir, mc.resolution, mc.channels, progress=progress
    )
    refit_path = refit_copy(args, source, train, test)
    refit = load_checkpoint(refit_path)
    assert refit.config.refit is not None
    gen = torch.Generator().manual_seed(0)
    chosen = torch.randperm(len(test), generator=gen)[: args.reference_num].sort().values
    reference = test.images[chosen]
    spaces: list[Space] = [
        ClassifierSpace("classifier", Evaluator(args.classifier, reference=reference)),
        RandomCNNSpace(reference),
    ]
    if not args.no_second_classifier:
        spaces.append(second_classifier_space(args, reference))
    rows = [
        measure("original", Models.of(source), "plain", spaces, args),
        measure("original", Models.of(source), "drs", spaces, args),
        measure("refit", Models.of(refit), "drs", spaces, args),
    ]
    compare(rows, spaces)
    meta: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "model_id": source.model_id,
        "refit_checkpoint": str(refit_path),
        "refit_model_id": refit.model_id,
        "refit": refit.config.refit.raw,
        "calibration": {"original": calibrated_nll(source), "refit": calibrated_nll(refit)},
        "num": args.num,
        "seeds": args.seeds,
        "reference_num": int(reference.shape[0]),
        "threads": args.threads,
        "spaces": {s.name: s.describe for s in spaces},
        "command": "python bench/d_refit.py " + " ".join(sys.argv[1:]),
    }
    result: dict[str, Any] = {"meta": meta, "rows": rows, "verdicts": verdicts(rows, spaces)}
    meta["seconds"] = round(time.time() - started, 1)
    table = markdown(rows, spaces, meta, result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "d_refit.json", result)
    (args.out / "d_refit.md").write_text(table)
    print(table)
    print(
        f"wrote {args.out / 'd_refit.md'} and {args.out / 'd_refit.json'} ({meta['seconds']:.0f} s)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "mnist")
    p.add_argument("--num", type=int, default=10_000, help="samples per seed (10000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per sampler (3)")
    p.add_argument("--keep", type=float, default=0.5, help="drs keep (0.5)")
    p.add_argument("--proposals", type=int, default=32, help="drs max_proposals (32)")
    p.add_argument("--refit-steps", type=int, default=2000, help="refit steps of D (2000)")
    p.add_argument("--refit-lr", type=float, default=REFIT_LR, help=f"({REFIT_LR:g})")
    p.add_argument("--refit-batch", type=int, default=REFIT_BATCH, help=f"({REFIT_BATCH})")
    p.add_argument(
        "--refit-checkpoint",
        type=Path,
        default=None,
        help="where the refit copy goes (default OUT/refit-checkpoint; reused if it is one)",
    )
    p.add_argument(
        "--calibration-num",
        type=int,
        default=10_000,
        help="held-out reals and G samples of the refit's calibration and held-out loss (10000)",
    )
    p.add_argument(
        "--reference-num", type=int, default=10_000, help="MNIST test images as reference (10000)"
    )
    p.add_argument(
        "--second-classifier",
        type=Path,
        default=None,
        help="the second classifier's folder (default OUT/classifier-b; trained if missing)",
    )
    p.add_argument("--no-second-classifier", action="store_true", help="two spaces only")
    p.add_argument("--classifier", type=Path, default=None, help="the evaluation classifier")
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--chunk", type=int, default=500, help="images per forward pass (500)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST IDX folder")
    p.add_argument("--out", type=Path, default=Path("runs/bench-d-refit"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
