"""What D buys at sampling time: every sampling method against plain, measured.

For each configuration of each method (a grid per method; docs/d-guided.md explains them) the
script draws ``--num`` images for each of ``--seeds`` seeds with the core sampler
(:func:`gan.samplers.dispatch.sample`: exactly the images ``gan-sample --method`` writes and
``gan-eval --method`` evaluates), measures the ``gan-eval`` metrics on them with the shared
evaluator (:meth:`training.metrics.evaluator.Evaluator.evaluate_images`: FID, KID, precision,
recall, class coverage, label accuracy for a conditional model) and the cost per image (forward
and backward passes through G and D, milliseconds on this machine), and compares each with
``plain`` on the same seeds. It prints a markdown table, writes it with the full JSON and a
grid of each configuration's first images, and says whether the issue's target is met: the
best forward-only method lowers FID by >= 15 % and raises precision by >= 0.05 without recall
falling by more than 0.05, at <= 4x the time of plain.

    python bench/d_guided.py                                  # bundled model, 10k x 3 seeds
    python bench/d_guided.py --num 300 --seeds 1 --grid quick  # a smoke test (under a minute)
    python bench/d_guided.py --methods plain,drs --checkpoint runs/x/checkpoints/best

drs and mh need a calibrated checkpoint (``gan-calibrate --checkpoint DIR``).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gan.checkpoint import load_checkpoint
from gan.errors import UserError
from gan.io import save_grid, write_json_atomic
from gan.samplers import (
    METHOD_NAMES,
    METHODS,
    MethodOptions,
    calibration_missing,
    options_dict,
    parse_options,
)
from gan.samplers.dispatch import Models, sample
from gan.samplers.results import GuidedResult
from training.metrics.evaluator import Evaluator, digit_labels, sampling_record

ROOT = Path(__file__).resolve().parent.parent
SEED_STRIDE = 1_000_000  # seed k draws the image seeds k * SEED_STRIDE + 0 .. num - 1
METRICS = (
    "fid",
    "kid",
    "precision",
    "recall",
    "coverage_entropy",
    "coverage_min_share",
    "label_accuracy",
)
TARGET = {"fid_drop": 0.15, "precision_gain": 0.05, "recall_loss": 0.05, "time_ratio": 4.0}

#: The configurations measured per method: "full" for the published table, "quick" to try the
#: script out.
GRIDS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "full": {
        "plain": [{}],
        "drs": [{"keep": k} for k in (0.5, 0.8, 0.9, 0.95)],
        "mh": [{"proposals": k} for k in (2, 4, 8, 16)],
        "langevin": [
            {"steps": 10, "step_size": 0.01},
            {"steps": 20, "step_size": 0.01},
            {"steps": 20, "step_size": 0.05},
            {"steps": 20, "step_size": 0.01, "noise": 0.0},
        ],
        "pixel_ascent": [{"start": "noise", "steps": 50}, {"start": "sample", "steps": 20}],
    },
    "quick": {
        "plain": [{}],
        "drs": [{"keep": 0.5}, {"keep": 0.9}],
        "mh": [{"proposals": 4}],
        "langevin": [{"steps": 5, "step_size": 0.01}],
        "pixel_ascent": [{"start": "noise", "steps": 10}],
    },
}


@dataclass
class Config:
    method: str
    options: MethodOptions

    @property
    def name(self) -> str:
        given = options_dict(self.options)
        return self.method + "".join(f" {k}={v}" for k, v in given.items())

    @property
    def slug(self) -> str:
        return self.name.replace(" ", "_").replace("=", "-")


def configs(grid: str, methods: list[str]) -> list[Config]:
    out = []
    for method in methods:
        for values in GRIDS[grid][method]:
            out.append(Config(method, parse_options(method, values)))
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def measure(
    models: Models,
    evaluator: Evaluator,
    config: Config,
    *,
    num: int,
    seeds: int,
    chunk: int,
    classes: tuple[str, ...],
    grid_dir: Path,
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for k in range(seeds):
        seed = k * SEED_STRIDE
        result: GuidedResult = sample(models, config.options, seed=seed, n=num, chunk=chunk)
        evaluated = evaluator.evaluate_images(
            result.images, seed=k, with_baseline=False, labels=digit_labels(classes, seed, num)
        )
        runs.append({"seed": seed, "metrics": evaluated["metrics"], **sampling_record(result)})
        if k == 0:
            columns = len(classes) if 2 <= len(classes) <= 16 else 8
            save_grid(result.images[: columns * 8], grid_dir / f"{config.slug}.png", nrow=columns)
        print(
            f"  {config.name} seed {seed}: FID {evaluated['metrics']['fid']:.2f}, "
            f"{runs[-1]['cost_per_image']['ms']:.2f} ms/image",
            file=sys.stderr,
        )
    summary: dict[str, Any] = {}
    for key in METRICS:
        values = [r["metrics"][key] for r in runs if key in r["metrics"]]
        if values:
            summary[key] = mean_std(values)
    cost_keys = runs[0]["cost_per_image"].keys()
    cost = {key: statistics.fmean(r["cost_per_image"][key] for r in runs) for key in cost_keys}
    rates = [r["acceptance_rate"] for r in runs if r["acceptance_rate"] is not None]
    before = [r["mean_logit_before"] for r in runs if r["mean_logit_before"] is not None]
    after = [r["mean_logit_after"] for r in runs if r["mean_logit_after"] is not None]
    return {
        "method": config.method,
        "name": config.name,
        "options": options_dict(config.options),
        "forward_only": not METHODS[config.method].needs_gradients,
        "metrics": summary,
        "cost_per_image": cost,
        "acceptance_rate": statistics.fmean(rates) if rates else None,
        "mean_logit_before": statistics.fmean(before) if before else None,
        "mean_logit_after": statistics.fmean(after) if after else None,
        "grid": str(grid_dir / f"{config.slug}.png"),
        "runs": runs,
    }


def compare(rows: list[dict[str, Any]]) -> None:
    """Add each row's change against plain, seed by seed (same seeds, paired)."""
    plain = next(r for r in rows if r["method"] == "plain")
    base_ms = plain["cost_per_image"]["ms"]
    base_runs = {r["seed"]: r["metrics"] for r in plain["runs"]}
    for row in rows:
        deltas: dict[str, list[float]] = {"fid_change": [], "precision_gain": [], "recall_gain": []}
        for run in row["runs"]:
            base = base_runs[run["seed"]]
            deltas["fid_change"].append(run["metrics"]["fid"] / base["fid"] - 1.0)
            deltas["precision_gain"].append(run["metrics"]["precision"] - base["precision"])
            deltas["recall_gain"].append(run["metrics"]["recall"] - base["recall"])
        row["vs_plain"] = {k: mean_std(v) for k, v in deltas.items()}
        row["vs_plain"]["time_ratio"] = row["cost_per_image"]["ms"] / base_ms if base_ms else None


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's target for the best forward-only configuration within the time budget."""
    candidates = [
        r
        for r in rows
        if r["forward_only"]
        and r["method"] != "plain"
        and (r["vs_plain"]["time_ratio"] or math.inf) <= TARGET["time_ratio"]
    ]
    if not candidates:
        return {"met": False, "why": "no forward-only configuration within 4x the time of plain"}
    best = min(candidates, key=lambda r: r["vs_plain"]["fid_change"][0])
    vs = best["vs_plain"]
    checks = {
        "fid_drop >= 15%": -vs["fid_change"][0] >= TARGET["fid_drop"],
        "precision_gain >= 0.05": vs["precision_gain"][0] >= TARGET["precision_gain"],
        "recall_loss <= 0.05": -vs["recall_gain"][0] <= TARGET["recall_loss"],
        "time <= 4x plain": vs["time_ratio"] <= TARGET["time_ratio"],
    }
    return {"best": best["name"], "checks": checks, "met": all(checks.values())}


def fmt_ms(mean_std_pair: tuple[float, float], digits: int, percent: bool = False) -> str:
    mean, std = mean_std_pair
    if math.isnan(mean):
        return "–"
    scale = 100.0 if percent else 1.0
    sign = "+" if percent and mean > 0 else ""
    text = f"{sign}{mean * scale:.{digits}f}"
    return text + (f" ± {std * scale:.{digits}f}" if std else "") + ("%" if percent else "")


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any], result: dict[str, Any]) -> str:
    conditional = any("label_accuracy" in r["metrics"] for r in rows)
    head = [
        "configuration",
        "FID",
        "ΔFID vs plain",
        "KID",
        "precision",
        "Δprec.",
        "recall",
        "Δrecall",
        "coverage",
        "G+D fwd / img",
        "bwd / img",
        "ms / img",
        "× plain time",
        "acceptance",
        "D logit before → after",
    ]
    if conditional:
        head.insert(9, "label acc.")
    lines = [
        f"Checkpoint `{meta['checkpoint']}` ({meta['model_id']}), {meta['num']} samples x "
        f"{meta['seeds']} seeds per configuration (image seeds k * {SEED_STRIDE} + i), "
        f"{meta['threads']} torch threads, {meta['device']}; mean ± std over seeds. "
        f"Real vs real at this size: FID {meta['baseline']['fid']:.2f}, precision "
        f"{meta['baseline']['precision']:.3f}, recall {meta['baseline']['recall']:.3f}.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        m, vs, cost = r["metrics"], r["vs_plain"], r["cost_per_image"]
        kid = m["kid"]
        cells = [
            f"`{r['name']}`",
            fmt_ms(m["fid"], 2),
            fmt_ms(vs["fid_change"], 1, percent=True) if r["method"] != "plain" else "",
            fmt_ms(kid, 2),
            fmt_ms(m["precision"], 3),
            fmt_ms(vs["precision_gain"], 3) if r["method"] != "plain" else "",
            fmt_ms(m["recall"], 3),
            fmt_ms(vs["recall_gain"], 3) if r["method"] != "plain" else "",
            fmt_ms(m["coverage_entropy"], 3),
            f"{cost['forwards']:.2f}",
            f"{cost['backwards']:.2f}",
            f"{cost['ms']:.3f}",
            f"{vs['time_ratio']:.2f}" if vs["time_ratio"] is not None else "–",
            "–" if r["acceptance_rate"] is None else f"{r['acceptance_rate']:.3f}",
            "–"
            if r["mean_logit_before"] is None
            else f"{r['mean_logit_before']:.2f} → {r['mean_logit_after']:.2f}",
        ]
        if conditional:
            cells.insert(9, fmt_ms(m.get("label_accuracy", (math.nan, 0.0)), 3))
        lines.append("| " + " | ".join(cells) + " |")
    v = result["verdict"]
    lines.append("")
    if "checks" in v:
        checks = ", ".join(f"{k}: {'yes' if ok else 'no'}" for k, ok in v["checks"].items())
        lines.append(
            f"Target (best forward-only configuration, `{v['best']}`): {checks}. "
            f"**{'met' if v['met'] else 'missed'}**."
        )
    else:
        lines.append(f"Target: **missed** ({v['why']}).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "mnist")
    p.add_argument("--num", type=int, default=10_000, help="samples per seed (10000)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per configuration (3)")
    p.add_argument(
        "--methods",
        default=",".join(METHOD_NAMES),
        help="comma-separated methods (plain is always included)",
    )
    p.add_argument(
        "--grid",
        choices=sorted(GRIDS),
        default="full",
        help="configurations per method: full (the published table) or quick",
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads (2)")
    p.add_argument("--chunk", type=int, default=500, help="images per forward pass (500)")
    p.add_argument("--data-dir", type=Path, default=None, help="MNIST IDX folder")
    p.add_argument("--classifier", type=Path, default=None, help="evaluation classifier")
    p.add_argument("--out", type=Path, default=Path("runs/bench-d-guided"))
    args = p.parse_args(argv)
    try:
        return run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    if args.num < 2 or args.seeds < 1:
        raise UserError(f"--num must be >= 2 and --seeds >= 1, got {args.num} and {args.seeds}")
    torch.set_num_threads(args.threads)
    methods = ["plain"] + [m for m in args.methods.split(",") if m and m != "plain"]
    for m in methods:
        if m not in METHODS:
            raise UserError(f"unknown method {m!r}; use {', '.join(METHOD_NAMES)}")
    ckpt = load_checkpoint(args.checkpoint)
    models = Models.of(ckpt)
    for m in methods:
        if METHODS[m].needs_calibration and models.calibration is None:
            raise calibration_missing(m, args.checkpoint)
    started = time.time()
    evaluator = Evaluator(args.classifier, args.data_dir)
    baseline = evaluator.baseline(args.num, 0)
    grid_dir = args.out / "grids"
    rows = []
    for config in configs(args.grid, methods):
        print(f"{config.name} ...", file=sys.stderr)
        rows.append(
            measure(
                models,
                evaluator,
                config,
                num=args.num,
                seeds=args.seeds,
                chunk=args.chunk,
                classes=ckpt.config.classes,
                grid_dir=grid_dir,
            )
        )
    compare(rows)
    meta = {
        "checkpoint": str(args.checkpoint),
        "model_id": ckpt.model_id,
        "num": args.num,
        "seeds": args.seeds,
        "threads": args.threads,
        "device": "cpu",
        "grid": args.grid,
        "calibration": None if models.calibration is None else models.calibration.summary(),
        "baseline": {k: baseline[k] for k in ("fid", "kid", "precision", "recall")},
        "command": "python bench/d_guided.py " + " ".join(sys.argv[1:]),
        "seconds": round(time.time() - started, 1),
    }
    result: dict[str, Any] = {"meta": meta, "rows": rows}
    result["verdict"] = verdict(rows)
    table = markdown(rows, meta, result)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "d_guided.json", result)
    (args.out / "d_guided.md").write_text(table)
    print(table)
    print(
        f"wrote {args.out / 'd_guided.md'}, {args.out / 'd_guided.json'} and {grid_dir}/*.png "
        f"({meta['seconds']:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
