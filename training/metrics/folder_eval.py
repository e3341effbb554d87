"""``gan-eval`` for a checkpoint trained on a folder of images: quality in a feature space that
works offline for any images (:mod:`training.metrics.anyfeatures`), beside the real-vs-real
baseline, and the memorisation check.

The folder is read again exactly as training read it (``--data-dir``, the run's seed and
``--limit``: the same seeded held-out split), and its fingerprint must match the checkpoint's.
The reference is a seeded subset of the training images; the generated images and the held-out
real images (never trained on) are compared with it at the same count, so the "real vs real" row
is what a perfect generator would score at that count. Small folders hold few held-out images
(5 %): the counts are reported, and both rows are noisy alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from training.metrics.metrics import EvalError

#: Most training images featurised as the reference (and as the memorisation pool's features).
MAX_REFERENCE = 5000


def evaluate_folder_checkpoint(
    ckpt_dir: str | os.PathLike[str],
    data_dir: Path,
    *,
    num_samples: int,
    seed: int = 0,
    memorisation_n: int = 1000,
    pairs_png: str | os.PathLike[str] | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The report of a folder checkpoint (see the module doc)."""
    from gan.checkpoint import load_checkpoint
    from gan.sampling import sample
    from training.config import TrainingError
    from training.data import reload_run_folder
    from training.metrics.anyfeatures import NAME, RandomFeatures, as_uint8, compare
    from training.metrics.memorisation import closest_pairs_grid, memorisation

    ck = load_checkpoint(ckpt_dir)
    if ck.generator is None:
        raise EvalError(f"{ckpt_dir}: a {ck.kind} checkpoint has no generator to evaluate")
    mc, cfg = ck.model_config, ck.config
    try:
        data, held = reload_run_folder(cfg, ckpt_dir, data_dir, cache_dir=cache_dir)
    except TrainingError as exc:
        raise EvalError(str(exc)) from exc
    if len(held) < 2:
        raise EvalError(f"{data_dir}: fewer than 2 held-out images; the folder is too small")
    gen = torch.Generator().manual_seed(seed)
    train_u8 = as_uint8(data.images)
    ref_idx = torch.randperm(len(train_u8), generator=gen)[: min(MAX_REFERENCE, len(train_u8))]
    n_cmp = min(num_samples, len(held))
    images = sample(
        ck.generator,
        mc.z_dim,
        seed=seed,
        n=num_samples,
        num_classes=len(cfg.classes),
    )
    net = RandomFeatures()
    with torch.inference_mode():
        f_ref = net.features(train_u8[ref_idx])
        f_held = net.features(as_uint8(held.images))
        f_gen = net.features(images)
    model = compare(f_ref, f_gen[:n_cmp])
    baseline = compare(f_ref, f_held[:n_cmp])
    result: dict[str, Any] = {
        "checkpoint": str(ckpt_dir),
        "model_id": ck.model_id,
        "feature_space": NAME,
        "feature_space_why": "a fixed-seed random CNN (training/metrics/anyfeatures.py): "
        "offline, the same on every machine, validated to rank blur, noise and a dropped "
        "class worse on held-out real images",
        "num_samples": len(images),
        "num_compared": n_cmp,
        "num_reference": len(ref_idx),
        "num_heldout": len(held),
        "metrics": model,
        "real_vs_real": baseline,
    }
    if memorisation_n > 0:
        n = min(memorisation_n, len(images))
        heldout_u8 = as_uint8(held.images)[:n]
        record, nearest_index = memorisation(
            images[:n],
            train_u8,
            heldout_u8,
            features={
                "random_cnn_features": (
                    torch.from_numpy(f_gen[:n]),
                    torch.from_numpy(f_ref),
                    torch.from_numpy(f_held[:n]),
                )
            },
        )
        if pairs_png is not None:
            record["closest_pairs_png"] = str(
                closest_pairs_grid(images[:n], train_u8, nearest_index, pairs_png)
            )
        result["memorisation"] = record
    return result


def format_folder_report(result: dict[str, Any]) -> str:
    """The report as text: each metric beside its real-vs-real value."""
    rows = [
        ("FID (lower is better)", "fid"),
        ("KID (lower is better)", "kid"),
        ("precision (higher is better)", "precision"),
        ("recall (higher is better)", "recall"),
    ]
    lines = [
        f"{result['model_id']}: {result['num_compared']} samples and as many held-out real "
        f"images against {result['num_reference']} training images, in {result['feature_space']}",
        f"{'metric':<32}{'model':>12}{'real vs real':>14}",
    ]
    for label, key in rows:
        lines.append(
            f"{label:<32}{result['metrics'][key]:>12.4g}{result['real_vs_real'][key]:>14.4g}"
        )
    mem = result.get("memorisation")
    if mem:
        for space in ("pixels", "random_cnn_features"):
            if space in mem:
                lines.append(
                    f"memorisation ({space}): nearest-training-image distance ratio "
                    f"{mem[space]['ratio']:.3f} (generated / held-out; well below 1 = copying)"
                )
        if "closest_pairs_png" in mem:
            lines.append(f"closest pairs: {mem['closest_pairs_png']}")
    return "\n".join(lines)
