"""Readable reports of evaluation results, and the part ``gan-eval --write`` stores."""

from __future__ import annotations

import time
from typing import Any

# Rows in display order: (result key, label, True when lower is better). A new metric
# registered in training/metrics/metrics.py shows up in reports once it has a row here.
REPORT_ROWS: tuple[tuple[str, str, bool], ...] = (
    ("fid", "FID", True),
    ("kid", "KID ± std", True),
    ("kid_std", "KID std over subsets", True),
    ("precision", "precision", False),
    ("recall", "recall", False),
    ("coverage_entropy", "class entropy (norm.)", False),
    ("coverage_min_share", "smallest class share", False),
    ("label_accuracy", "label accuracy", False),  # conditional models only
    ("label_accuracy_min", "worst class's accuracy", False),  # conditional models only
)


def _cell(key: str, values: dict[str, Any]) -> str:
    if key == "kid":
        return f"{values['kid']:.4f} ± {values['kid_std']:.4f}"
    return f"{values[key]:.3f}" if key == "fid" else f"{values[key]:.4f}"


def _ratio(key: str, model: dict[str, Any], base: dict[str, Any]) -> str:
    # Only meaningful against a baseline clearly above zero (KID: above its own subset noise).
    floor = max(1e-6, base["kid_std"]) if key == "kid" else 1e-6
    return f"{model[key] / base[key]:.2f}x" if base[key] > floor else "n/a"


def format_report(result: dict[str, Any]) -> str:
    """A readable table: metric, model, real-vs-real baseline, model/baseline ratio."""
    lines = []
    ck = result.get("checkpoint")
    if ck:
        lines.append(f"checkpoint: {ck['path']} ({ck['model_id']})")
    ref = result["reference"]
    cls = result["classifier"]
    lines.append(
        f"samples: {result['num_images']} (seed {result['seed']}) vs "
        f"{ref.get('name', 'custom')} {ref.get('split', '')} set ({ref['num_images']} images)"
    )
    lines.append(
        f"feature space: classifier {cls['path']} ({cls['feature_dim']}-d, test accuracy "
        f"{cls['test_accuracy']:.2%})"
    )
    base = result.get("baseline")
    if base:
        lines.append(f"baseline: {base['source']} vs the same reference")
    sampling = result.get("sampling") or {}
    if sampling.get("method", "plain") != "plain":
        options = ", ".join(f"{k}={v}" for k, v in sampling.get("method_options", {}).items())
        cost = sampling.get("cost_per_image", {})
        parts = [f"sampling: {sampling['method']} ({options})"]
        if sampling.get("acceptance_rate") is not None:
            parts.append(f"acceptance rate {sampling['acceptance_rate']:.3f}")
        if cost:
            parts.append(
                f"{cost['forwards']:.2f} forwards + {cost['backwards']:.2f} backwards, "
                f"{cost['ms']:.2f} ms per image"
            )
        lines.append("; ".join(parts))
    lines.append("")
    header = f"{'metric':<22}{'model':>20}{'real-vs-real':>20}{'ratio':>10}"
    lines += [header, "-" * len(header)]
    m = result["metrics"]
    for key, label, lower in REPORT_ROWS:
        if key == "kid_std" or key not in m:
            continue  # KID's std is shown with KID; label accuracy only for conditional models
        arrow = "(lower better)" if lower else "(higher better)"
        base_s = _cell(key, base) if base and key in base else ""
        ratio_s = _ratio(key, m, base) if base and key in base else ""
        lines.append(f"{label:<22}{_cell(key, m):>20}{base_s:>20}{ratio_s:>10}  {arrow}")
    lines.append("")
    shares = " ".join(f"{d}:{s:.1%}" for d, s in enumerate(m["class_shares"]))
    lines.append(f"predicted-digit shares (model): {shares}")
    if m.get("label_accuracy_per_class"):
        per = " ".join(
            f"{d}:{a:.1%}" for d, a in enumerate(m["label_accuracy_per_class"]) if a is not None
        )
        lines.append(f"label accuracy per asked digit (model): {per}")
    if base:
        shares = " ".join(f"{d}:{s:.1%}" for d, s in enumerate(base["class_shares"]))
        lines.append(f"predicted-digit shares (real):  {shares}")
    mem = result.get("memorisation")
    if mem:
        lines.append("")
        lines.append(memorisation_line(mem))
    lines.append(f"({result['seconds']:.1f} s)")
    return "\n".join(lines)


def memorisation_line(mem: dict[str, Any]) -> str:
    """The memorisation check in one line: per space, the median distance of samples and of
    held-out real images to their nearest training image, and the ratio (well below 1:
    copying)."""
    spaces = []
    for key, name in (("pixels", "pixels"), ("classifier_features", "classifier features")):
        if key in mem:
            s = mem[key]
            pool = f", of {s['num_train']} training images" if "num_train" in s else ""
            spaces.append(
                f"{name} {s['ratio']:.2f} ({s['generated_median']:.3g} vs "
                f"{s['heldout_median']:.3g}{pool})"
            )
    pairs = f"; closest pairs: {mem['closest_pairs_png']}" if "closest_pairs_png" in mem else ""
    return (
        f"memorisation (median distance to the nearest of {mem['num_train']} training images, "
        f"{mem['num_generated']} samples / {mem['num_heldout']} held-out reals; well below 1 "
        f"means copying): {', '.join(spaces)}{pairs}"
    )


def metrics_for_config(result: dict[str, Any]) -> dict[str, Any]:
    """The part of a result that ``--write`` stores under a checkpoint's ``metrics``."""
    m, base = result["metrics"], result.get("baseline", {})
    keys = [k for k, _, _ in REPORT_ROWS if k in m] + ["class_shares"]
    keys += [k for k in ("label_accuracy_per_class",) if k in m]
    return {
        **{k: m[k] for k in keys},
        "eval": {
            "num_samples": result["num_images"],
            "seed": result["seed"],
            "reference": f"{result['reference'].get('name', 'custom')} "
            f"{result['reference'].get('split', '')}".strip(),
            "classifier_sha256": result["classifier"]["weights_sha256"],
            "settings": result["settings"],
            "baseline": {k: base[k] for k in keys if k in base},
            "evaluated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    }
