"""What ``--augment`` (DiffAugment) buys on a small image folder: quality and mode coverage.

The script writes a synthetic two-class folder of its own making (``discs/`` and ``squares/``:
one flat-coloured disc or square per 32x32 RGB image on a black background, random colour, size
and position, half of each), then trains the same unconditional recipe on it with and without
``--augment``, interleaved (``bench/interleave.py``: equal seconds of training steps each, in
turns, so machine noise hits both alike), and reads every sample with an exact shape reader:

* the foreground is every pixel whose brightest channel is above 1/4 of full scale;
* a sample is a *clean disc* or a *clean square* when its foreground fills its bounding box
  the way a disc (pi/4 of the box) or a square (the whole box) does, the box is about square,
  the shape is 8..23 px across (the data's are 10..20) and its colour is flat; anything else is *malformed*.

Reported for the real images (the reader's baseline: it must read them all correctly) and for
``--num`` samples of each model: the share of clean shapes (quality), the share of squares among
the clean ones (coverage: the data is 50 %), and a grid of each. A model that draws only discs
has mode-collapsed however clean its discs are. Also reported: why the malformed ones are
malformed, the *variety gap* of the clean shapes (size, position and saturation against the
real images', :func:`variety`), with ``--truncations`` the same seeds drawn with truncated
latents, and with ``--palette K`` a folder of 2 K known modes (shape x hue) and their coverage
(:func:`read_modes`). Each model's checkpoint is saved (``OUT/VARIANT/checkpoints/latest``) for
``bench/folder_samplers.py``.

    python bench/augment_folder.py                              # 400 images, 6 min each
    python bench/augment_folder.py --images 240 --budget 10 --variants diff-w32   # a smoke test
    python bench/augment_folder.py --images 4800 --palette 6    # a medium folder, 12 modes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import train_interleaved  # noqa: E402  (bench/interleave.py)

from gan.io import save_grid  # noqa: E402
from gan.sampling import sample  # noqa: E402
from training.config import config_from_options  # noqa: E402
from training.data import load_training_data  # noqa: E402
from training.loop import Trainer  # noqa: E402
from training.runtime import configure_torch  # noqa: E402

SIZE = 32
CLASSES = ("discs", "squares")
DISC_FILL = math.pi / 4


def make_folder(root: Path, per_class: int, seed: int, palette: int = 0) -> Path:
    """``root/discs/*.png`` and ``root/squares/*.png``, ``per_class`` of each, seeded; with
    ``palette`` K > 0 every colour has one of K evenly spaced hues (saturation and size still
    vary), so the folder has 2 K modes (shape x hue) in equal shares (:func:`read_modes`)."""
    rng = np.random.default_rng(seed)
    for cls in CLASSES:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = Image.new("RGB", (SIZE, SIZE), (0, 0, 0))
            draw = ImageDraw.Draw(img)
            half = int(rng.integers(5, 11))  # 10..20 px across
            cx, cy = (int(rng.integers(half + 1, SIZE - half - 1)) for _ in range(2))
            hue = rng.random() if not palette else int(rng.integers(palette)) / palette
            colour = tuple(int(255 * c) for c in _hsv(hue, 0.6 + 0.4 * rng.random(), 1.0))
            box = (cx - half, cy - half, cx + half - 1, cy + half - 1)
            if cls == "discs":
                draw.ellipse(box, fill=colour)
            else:
                draw.rectangle(box, fill=colour)
            img.save(root / cls / f"{i:04d}.png")
    return root


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]


def read_shape(img: np.ndarray) -> str:
    """'disc', 'square' or 'malformed' for one uint8 [3, H, W] image (see the module doc)."""
    verdict = shape_verdict(img)
    return "malformed" if verdict not in ("disc", "square") else verdict


def _foreground(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One uint8 [3, H, W] image as floats in 0..1, its foreground mask (brightest channel above
    1/4 of full scale) and the rows and columns the foreground touches."""
    x = img.astype(np.float32) / 255.0
    mask = x.max(axis=0) > 0.25
    return x, mask, np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))


def shape_verdict(img: np.ndarray) -> str:
    """'disc', 'square', or why the image is malformed: 'empty', 'too small', 'too large',
    'box not square', 'colour not flat' or 'fill between'."""
    x, mask, rows, cols = _foreground(img)
    if len(rows) == 0:
        return "empty"
    h, w = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    # The data's shapes are 10..20 px across; a blob filling the frame is not a shape.
    if min(h, w) < 8:
        return "too small"
    if max(h, w) > 23:
        return "too large"
    if abs(int(h) - int(w)) > max(2, 0.15 * max(h, w)):
        return "box not square"
    fill = mask.sum() / float(h * w)
    colours = x[:, mask]
    if float(colours.std(axis=1).max()) > 0.12:  # a flat colour, not a smear
        return "colour not flat"
    if abs(fill - DISC_FILL) <= 0.07:
        return "disc"
    if fill >= 0.92:
        return "square"
    return "fill between"


#: What varies from one real image to the next, read off each clean shape (see
#: :func:`shape_attributes`): a model can draw clean shapes that are all alike.
ATTRIBUTES = ("size", "x", "y", "saturation", "value")
#: The smallest unit each attribute's distance is counted in (the real value is always 1.0,
#: full brightness: its spread is 0).
_FLOORS = (1.0, 1.0, 1.0, 0.05, 0.05)
#: The attributes the data draws at random, which the variety gap averages over (the value is
#: reported beside it: the data's is constant).
_VARYING = 4


def shape_attributes(img: np.ndarray) -> tuple[float, ...]:
    """One uint8 [3, H, W] image's foreground: its side (px), centre x and y (px), and its mean
    colour's HSV saturation and value (0..1), in the order of :data:`ATTRIBUTES`."""
    x, mask, rows, cols = _foreground(img)
    colour = x[:, mask].mean(axis=1)
    top, low = float(colour.max()), float(colour.min())
    return (
        (rows[-1] - rows[0] + cols[-1] - cols[0] + 2) / 2.0,
        (cols[0] + cols[-1]) / 2.0,
        (rows[0] + rows[-1]) / 2.0,
        (top - low) / top if top > 0 else 0.0,
        top,
    )


def hue_bins(img: np.ndarray, bins: int = 12) -> int:
    """The hue bin (of ``bins``) of one clean shape's mean colour."""
    return int(shape_hue(img) * bins) % bins


def variety(images: np.ndarray, kinds: list[str], real: dict[str, Any] | None) -> dict[str, Any]:
    """The clean shapes' attributes: each one's spread (standard deviation), the hue bins (of
    12) holding at least 2 % of them, and, against ``real`` (the real images' own row), the
    1-D Wasserstein distance per attribute in units of the real spread (at least
    :data:`_FLOORS`) and its average over size, position and saturation (the variety gap): 0
    when the clean shapes vary as the data does, about 1 when an attribute is off by one real
    spread."""
    clean = [im for im, k in zip(images, kinds, strict=True) if k != "malformed"]
    if not clean:
        return {"attributes": None}
    values = np.array([shape_attributes(im) for im in clean], dtype=np.float64)
    counts = np.bincount([hue_bins(im) for im in clean], minlength=12)
    row: dict[str, Any] = {
        "attributes": values.tolist(),
        "spread": dict(zip(ATTRIBUTES, values.std(axis=0).round(3).tolist(), strict=True)),
        "hue_bins": int((counts >= 0.02 * len(clean)).sum()),
    }
    if real is not None and real.get("attributes"):
        ref = np.array(real["attributes"], dtype=np.float64)
        qs = np.linspace(0.0, 1.0, 201)
        w1 = [
            float(np.abs(np.quantile(values[:, j], qs) - np.quantile(ref[:, j], qs)).mean())
            / max(float(ref[:, j].std()), _FLOORS[j])
            for j in range(len(ATTRIBUTES))
        ]
        row["attribute_w1"] = dict(zip(ATTRIBUTES, np.round(w1, 3).tolist(), strict=True))
        row["variety_gap"] = float(np.mean(w1[:_VARYING]))
        row["mean_value"] = float(values[:, -1].mean())
    return row


def shape_hue(img: np.ndarray) -> float:
    """The hue (0..1) of one clean shape's mean colour (foreground as :func:`read_shape`)."""
    x, mask, _, _ = _foreground(img)
    r, g, b = x[:, mask].mean(axis=1).tolist()
    top, low = max(r, g, b), min(r, g, b)
    if top - low < 1e-6:
        return 0.0
    if top == r:
        h = ((g - b) / (top - low)) % 6
    elif top == g:
        h = (b - r) / (top - low) + 2
    else:
        h = (r - g) / (top - low) + 4
    return h / 6


def read_modes(images: np.ndarray, kinds: list[str], palette: int) -> dict[str, Any]:
    """Mode coverage on a ``palette`` folder: each clean shape's mode is (its shape, the
    nearest of the K hues); the modes hit (holding at least a quarter of a uniform share of the
    clean shapes), of 2 K, and the KL divergence of the clean shapes' mode histogram to uniform
    (0: every mode equally often; log(2 K) for one mode)."""
    m = 2 * palette
    counts = np.zeros(m)
    for im, kind in zip(images, kinds, strict=True):
        if kind != "malformed":
            hue = round(shape_hue(im) * palette) % palette
            counts[(kind == "square") * palette + hue] += 1
    total = counts.sum()
    if not total:
        return {"modes": m, "modes_hit": 0, "mode_kl": None, "mode_counts": counts.tolist()}
    p = counts / total
    hit = p > 0
    return {
        "modes": m,
        "modes_hit": int((p >= 0.25 / m).sum()),
        "mode_kl": float((p[hit] * np.log(m * p[hit])).sum()),
        # discs at hues 0..K-1, then squares (hue k: k / K of the colour circle, 0 = red)
        "mode_counts": counts.astype(int).tolist(),
    }


def read_all(
    images: torch.Tensor,
    asked: list[int] | None = None,
    real: dict[str, Any] | None = None,
    palette: int = 0,
) -> dict[str, Any]:
    """The reader's counts over ``images``; ``asked`` (a conditional model's requested class
    index per image, into :data:`CLASSES`) adds the share of images that are a clean shape *of
    the requested class*; the clean shapes' :func:`variety`, against ``real`` where given; on
    a ``palette`` folder, the mode coverage (:func:`read_modes`)."""
    verdicts = [shape_verdict(im) for im in images.numpy()]
    kinds = [v if v in ("disc", "square") else "malformed" for v in verdicts]
    n = len(kinds)
    discs, squares = kinds.count("disc"), kinds.count("square")
    clean = discs + squares
    row: dict[str, Any] = {
        "n": n,
        "clean_share": clean / n,
        "discs": discs,
        "squares": squares,
        "malformed": n - clean,
        "square_share_of_clean": squares / clean if clean else None,
        "coverage": (2 * min(discs, squares) / clean) if clean else 0.0,  # 1: 50/50, 0: one shape
        "why_malformed": {
            why: verdicts.count(why) / n
            for why in sorted(set(verdicts) - {"disc", "square"}, key=verdicts.count, reverse=True)
        },
    }
    if asked is not None:
        right = sum(k + "s" == CLASSES[c] for k, c in zip(kinds, asked, strict=True))
        row["as_asked_share"] = right / n
    row.update(variety(images.numpy(), kinds, real))
    if palette:
        row.update(read_modes(images.numpy(), kinds, palette))
    return row


def real_row(images: torch.Tensor, palette: int = 0) -> dict[str, Any]:
    """The real images through the reader (the reference the samples' variety is measured
    against), with the variety gap's noise floor: one half of them against the other."""
    row = read_all(images, palette=palette)
    row["variety_gap"] = read_all(images[1::2], real=read_all(images[::2]))["variety_gap"]
    return row


def shown(row: dict[str, Any]) -> dict[str, Any]:
    """A row without its per-shape attribute lists (for logs and JSON)."""
    return {k: v for k, v in row.items() if k != "attributes"}


#: name -> training options over the defaults: the same folder and seconds for each.
#: ``slow-*``: Adam 2e-4 (0.5, 0.999), the recipe before the MNIST search (docs/training.md).
_SLOW = {"lr_g": 2e-4, "lr_d": 2e-4, "beta2": 0.999}
_W16 = {"recipe": "dcgan", "augment": "diff", "conditional": True, "g_width": 16, "d_width": 16}
_W32 = {"recipe": "dcgan", "augment": "diff", "g_width": 32, "d_width": 32}
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {"recipe": "dcgan", "augment": "none"},
    "diff": {"recipe": "dcgan", "augment": "diff"},
    "ada": {"recipe": "dcgan", "augment": "ada"},
    "slow-diff": {"recipe": "dcgan", "augment": "diff", **_SLOW},
    "slow-ada": {"recipe": "dcgan", "augment": "ada", **_SLOW},
    "r3gan-ada": {"recipe": "r3gan", "augment": "ada"},
    "r3gan-diff": {"recipe": "r3gan", "augment": "diff"},
    # Class-conditional (the folder's sub-folders as classes; README's folder command).
    "cond-plain": {"recipe": "dcgan", "augment": "none", "conditional": True},
    "cond-diff": {"recipe": "dcgan", "augment": "diff", "conditional": True},
    "cond-ada": {"recipe": "dcgan", "augment": "ada", "conditional": True},
    # Recipe candidates for folders.
    "diff-lr2": {"recipe": "dcgan", "augment": "diff", "lr_g": 2e-4, "lr_d": 2e-4},
    "diff-b32": {"recipe": "dcgan", "augment": "diff", "batch_size": 32},
    "diff-hinge": {"recipe": "dcgan", "augment": "diff", "loss": "hinge"},
    "diff-r1": {"recipe": "dcgan", "augment": "diff", "r1_gamma": 1.0},
    "diff-noema": {"recipe": "dcgan", "augment": "diff", "ema_decay": 0.0},
    "rpgan-diff": {"recipe": "dcgan", "augment": "diff", "loss": "rpgan", "r1_gamma": 1.0},
    "diff-w32": {"recipe": "dcgan", "augment": "diff", "g_width": 32, "d_width": 32},
    "cond-diff-w32": {
        "recipe": "dcgan",
        "augment": "diff",
        "conditional": True,
        "g_width": 32,
        "d_width": 32,
    },
    "cond-ada-w32": {
        "recipe": "dcgan",
        "augment": "ada",
        "conditional": True,
        "g_width": 32,
        "d_width": 32,
    },
    "cond-diff-w16": {
        "recipe": "dcgan",
        "augment": "diff",
        "conditional": True,
        "g_width": 16,
        "d_width": 16,
    },
    "r3gan-small-diff": {"recipe": "r3gan-small", "augment": "diff"},
    # Optimiser and EMA candidates around the best of the 300 s run (conditional, widths 16).
    "w16-lr1e3": {**_W16, "lr_g": 1e-3, "lr_d": 1e-3},
    "w16-b32": {**_W16, "batch_size": 32},
    "w16-noema": {**_W16, "ema_decay": 0.0},
    "w16-ema-hl": {**_W16, "ema_kimg": 10.0},
    "w16-r1": {**_W16, "r1_gamma": 0.1},
    "w16-beta0": {**_W16, "beta1": 0.0},
    "w16-b16": {**_W16, "batch_size": 16},
    "w16-b32-lr3e4": {**_W16, "batch_size": 32, "lr_g": 3e-4, "lr_d": 3e-4},
    "w32-b32": {**_W16, "g_width": 32, "d_width": 32, "batch_size": 32},
    # The learning rate decayed (cosine to 1/4) over about what 300 s holds at widths 16.
    "w16-cosine": {**_W16, "lr_schedule": "cosine", "steps": 7500},
    # DiffAugment without cutout (a half-size grey square hides most of a 10..20 px shape).
    "w16-diff-ct": {**_W16, "augment_policies": "color,translation"},
    "w16-dw32": {**_W16, "d_width": 32},
    # The folder defaults since 2026-12-07 (no cutout), with and without --conditional, and
    # translation alone.
    "diff-w32-ct": {**_W32, "augment_policies": "color,translation"},
    "cond-diff-w32-ct": {**_W32, "conditional": True, "augment_policies": "color,translation"},
    "diff-w32-t": {**_W32, "augment_policies": "translation"},
    "w16-diff-t": {**_W16, "augment_policies": "translation"},
    "cond-diff-w32-t": {**_W32, "conditional": True, "augment_policies": "translation"},
    "r3gan-small-ada": {"recipe": "r3gan-small", "augment": "ada"},
    # For a medium folder (--images 4800 --palette 6): widths and augmentation apart.
    "plain-w32": {**_W32, "augment": "none"},
    "ada-w32": {**_W32, "augment": "ada"},
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--images", type=int, default=400, help="images in the folder, half each (400)")
    p.add_argument("--budget", type=float, default=360.0, help="training seconds per model (360)")
    p.add_argument("--slice", type=float, default=5.0, help="seconds per turn (5)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=2000, help="samples read per model (2000)")
    p.add_argument("--out", type=Path, default=Path("runs/bench-augment"))
    p.add_argument(
        "--palette",
        type=int,
        default=0,
        help="K > 0: colours of K fixed hues, 2 K modes (shape x hue), and mode coverage read "
        "(default 0: any hue)",
    )
    p.add_argument(
        "--truncations",
        default="",
        help="also read the samples drawn at these truncations (comma-separated, e.g. 1.0,0.7: "
        "latent components beyond +-t redrawn, gan.latents); the plain row is always read",
    )
    p.add_argument(
        "--variants",
        default="plain,diff,ada,r3gan-ada",
        help=f"comma-separated, of {', '.join(VARIANTS)} (default: all)",
    )
    args = p.parse_args()
    truncations = [float(t) for t in args.truncations.split(",") if t.strip()]
    configure_torch(args.threads)
    folder = make_folder(args.out / "shapes", args.images // 2, args.seed, args.palette)
    data, held = load_training_data(
        "folder", folder, SIZE, 3, cache_dir=args.out / "cache", seed=args.seed, progress=False
    )
    # The real images (uint8, as ImageData holds them) through the same reader: its labels
    # must match the folders.
    real_u8 = data.images
    real = real_row(real_u8, args.palette)
    truth = [CLASSES[int(y)] for y in data.labels] if data.labels is not None else []
    if truth:
        read = [read_shape(im) for im in real_u8.numpy()]
        real["reader_accuracy"] = sum(r + "s" == t for r, t in zip(read, truth, strict=True)) / len(
            truth
        )
    print(
        f"folder: {len(data)} training images ({len(held)} held out); reader on the real "
        f"images: {shown(real)}",
        flush=True,
    )

    trainers: dict[str, Trainer] = {}
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
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
        g = t.export_generator()
        k = t.mc.num_classes
        images = sample(g, t.mc.z_dim, seed=0, n=args.num, num_classes=k)
        save_grid(images[:64], args.out / f"{name}-samples.png", nrow=8)
        # A conditional model draws class s mod K for image seed s (gan.sampling.class_labels);
        # the folder's classes are its sub-folders in sorted order, as CLASSES.
        asked = [s % k for s in range(args.num)] if k else None
        rows[name] = {"steps": t.step, **read_all(images, asked, real, args.palette)}
        if t.ada is not None:  # ADA's state at the end: a controller too slow leaves p near 0
            rows[name]["ada_p"], rows[name]["ada_rt"] = t.ada.p, t.ada.r_t
        print(f"{name}: {shown(rows[name])}", flush=True)
        # The same image seeds (and classes) with the latent truncated: fidelity for variety.
        for trunc in truncations:
            images = sample(g, t.mc.z_dim, seed=0, n=args.num, num_classes=k, truncation=trunc)
            save_grid(images[:64], args.out / f"{name}-t{trunc:g}-samples.png", nrow=8)
            rows[f"{name} t={trunc:g}"] = {
                "steps": t.step,
                **read_all(images, asked, real, args.palette),
            }
            print(f"{name} t={trunc:g}: {shown(rows[f'{name} t={trunc:g}'])}", flush=True)
        # The checkpoint (gan-sample, gan-calibrate and gan-eval read it): RUN/checkpoints/.
        t.save_checkpoint(g=g)

    lines = [
        f"{len(data)} training images (discs and squares, half each"
        + (f"; {args.palette} hues, {2 * args.palette} modes" if args.palette else "")
        + f"), {args.budget:.0f} s of "
        f"training steps per model interleaved in {args.slice:.0f} s turns ({args.threads} torch "
        f"threads, wall {wall / 60:.0f} min); {args.num} samples read per model.",
        "",
        "| images | iterations | clean shapes | squares among clean (data: 50 %) | coverage "
        "| the class asked for | variety gap (real 0) | hue bins (of 12) | modes hit | mode KL "
        "| ADA p, r_t |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        sq, asked = r["square_share_of_clean"], r.get("as_asked_share")
        ada = f"{r['ada_p']:.2f}, {r['ada_rt']:.2f}" if "ada_p" in r else "–"
        gap = f"{r['variety_gap']:.2f}" if "variety_gap" in r else "–"
        modes = f"{r['modes_hit']} of {r['modes']}" if "modes" in r else "–"
        kl = f"{r['mode_kl']:.3f}" if r.get("mode_kl") is not None else "–"
        lines.append(
            f"| {name} | {r.get('steps', '–')} | {100 * r['clean_share']:.1f} % | "
            f"{'–' if sq is None else f'{100 * sq:.1f} %'} | {r['coverage']:.2f} | "
            f"{'–' if asked is None else f'{100 * asked:.1f} %'} | {gap} | "
            f"{r.get('hue_bins', '–')} | {modes} | {kl} | {ada} |"
        )
    table = "\n".join(lines)
    print("\n" + table)
    (args.out / "summary.md").write_text(table + "\n")
    rows = {name: shown(r) for name, r in rows.items()}
    (args.out / "summary.json").write_text(json.dumps({"wall_s": wall, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
