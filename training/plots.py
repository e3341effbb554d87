"""The run's pictures: the loss curve (and the quick FID, D's real/fake gap or ADA's p beside
it) from its log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def image_chw(png: Path) -> Any:
    """A saved grid as a uint8 [C, H, W] array for TensorBoard."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(png).convert("RGB"))
    return arr.transpose(2, 0, 1)


def write_loss_curve(log_path: Path, out_png: Path) -> None:
    """Plot the losses (D's and G's; an auto-encoder's or EBM's own), and the quick FID (MNIST)
    or D's real/fake gap (other data), from a run's log.jsonl (written at every evaluation and
    at the end)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not log_path.is_file():
        return
    losses: dict[str, tuple[list[int], list[float]]] = {}
    signal: dict[str, tuple[list[int], list[float]]] = {}
    for line in log_path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        for k, v in r.items():
            if k == "loss" or k.endswith("_loss"):
                losses.setdefault(k, ([], []))
                losses[k][0].append(r["step"])
                losses[k][1].append(v)
            if k.startswith("fid") or k in ("d_gap", "ada_p"):
                signal.setdefault(k, ([], []))
                signal[k][0].append(r["step"])
                signal[k][1].append(v)
    if not losses:
        return
    ncols = 1 + len(signal)
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0][0]
    for key, (xs, ys) in losses.items():
        ax.plot(xs, ys, label=key)
    ax.set_xlabel("step")
    ax.set_title("losses")
    ax.legend()
    ax.grid(alpha=0.3)
    titles = {
        "d_gap": "D's mean logit: held-out real minus G's samples",
        "ada_p": "ADA's augmentation probability p",
    }
    for ax2, (key, (xs, ys)) in zip(axes[0][1:], sorted(signal.items()), strict=True):
        ax2.plot(xs, ys, marker="o")
        if key.startswith("fid"):
            ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_title(titles.get(key, "FID (classifier space, quick)"))
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
