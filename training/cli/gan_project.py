"""``gan-project``: images -> the model's latents, offline (the path ``POST /project`` runs)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gan.errors import UserError
from training.cli.common import apply_threads, run_command


def build_project_parser() -> argparse.ArgumentParser:
    from gan.projection import MAX_RESTARTS, MAX_STEPS, ProjectOptions

    d = ProjectOptions()
    p = argparse.ArgumentParser(
        prog="gan-project",
        description="Project images into a checkpoint's latent space (gan/projection.py): the "
        "encoder's guess where the checkpoint has one, then Adam over z on pixel MSE (plus, "
        "with --perceptual, a distance in D's feature maps), several restarts (and, for a conditional "
        "model without --label, several candidate classes) in one batch. Writes, per image, "
        "the reconstruction G(z) as NAME.projection.png, the original beside it as "
        "NAME.side-by-side.png, and every latent with its class, distances and D's scores in "
        "projections.json. `gan-sample`-style: the same z and label given to POST /generate "
        "draw exactly the reconstruction.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint or run folder")
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, WebP, BMP, GIF)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--label",
        default=None,
        help="class (index or name) of every image, conditional models only; left out, the "
        "class is searched",
    )
    p.add_argument(
        "--steps", type=int, default=d.steps, help=f"Adam steps (0..{MAX_STEPS}; {d.steps})"
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=d.restarts,
        help=f"starts per class (1..{MAX_RESTARTS}; {d.restarts})",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=d.classes,
        help=f"candidate classes without --label: the encoder's most likely ({d.classes}); "
        "every class when the checkpoint has no encoder",
    )
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate on z ({d.lr:g})")
    p.add_argument(
        "--perceptual",
        type=float,
        default=d.perceptual,
        help=f"weight of the perceptual distance (D's features) against pixel MSE "
        f"({d.perceptual:g}; 0: pixels only)",
    )
    p.add_argument(
        "--seed", type=int, default=d.seed, help=f"seed of the random restarts ({d.seed})"
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p


def _side_by_side(original: Any, reconstruction: Any, scale: int) -> Any:
    """uint8 [C, R, R] twice -> one [C, R*s, 2*R*s + gap] image, nearest-neighbour upscaled."""
    import torch

    pair = torch.stack([original, reconstruction]).repeat_interleave(scale, 2)
    pair = pair.repeat_interleave(scale, 3)  # [2, C, R*s, R*s]
    gap = torch.full((pair.shape[1], pair.shape[2], max(2, scale)), 128, dtype=torch.uint8)
    return torch.cat([pair[0], gap, pair[1]], dim=2)


def project_cli(argv: list[str] | None = None) -> int:
    import time

    import torch

    from gan.checkpoint import load_checkpoint
    from gan.io import encode_png, write_bytes_atomic, write_json_atomic
    from gan.preprocess import ImageDecodeError, open_image, to_model_pixels
    from gan.projection import ProjectOptions, project_checkpoint
    from gan.runs import resolve_checkpoint
    from gan.sampling import LabelError, resolve_label, score

    args = build_project_parser().parse_args(argv)
    apply_threads(args.threads)
    options = ProjectOptions(
        steps=args.steps,
        restarts=args.restarts,
        classes=args.classes,
        lr=args.lr,
        perceptual=args.perceptual,
        seed=args.seed,
    )
    path, note = resolve_checkpoint(args.checkpoint)
    if note:
        print(note)
    ckpt = load_checkpoint(path)
    mc, classes = ckpt.model_config, ckpt.config.classes
    label: int | None = None
    if args.label is not None:
        if not classes:
            raise UserError("--label: this model is unconditional; leave it out")
        try:
            label = resolve_label(args.label, classes)
        except LabelError as exc:
            raise UserError(f"--label: {exc}") from exc
    targets = []
    for image in args.images:
        try:
            pixels = to_model_pixels(open_image(image), mc.resolution, mc.channels)
        except ImageDecodeError as exc:
            raise UserError(f"{image}: {exc}") from exc
        targets.append(torch.from_numpy(pixels.copy()))
    batch = torch.stack(targets)  # uint8 [N, C, R, R]
    started = time.perf_counter()
    results = project_checkpoint(ckpt, batch, [label] * len(targets), options)
    seconds = time.perf_counter() - started
    recon = torch.stack([r.image for r in results])
    d = ckpt.discriminator
    logits: dict[str, list[float] | None] = {"upload": None, "reconstruction": None}
    if d is not None:
        y = torch.tensor([r.label for r in results], dtype=torch.int64) if mc.conditional else None
        logits = {
            "upload": score(d, batch, y).tolist(),
            "reconstruction": score(d, recon, y).tolist(),
        }
    rs = ckpt.config.real_scores
    args.out.mkdir(parents=True, exist_ok=True)
    scale = max(1, 112 // mc.resolution)
    records = []
    for i, (image, r) in enumerate(zip(args.images, results, strict=True)):
        stem = image.stem
        write_bytes_atomic(args.out / f"{stem}.projection.png", _png(encode_png, r.image))
        pair = _side_by_side(batch[i], r.image, scale)
        write_bytes_atomic(args.out / f"{stem}.side-by-side.png", _png(encode_png, pair))
        record: dict[str, Any] = {
            "file": str(image),
            "z": r.z,
            "label": r.label,
            "class_name": None if r.label is None else classes[r.label],
            "candidates": r.candidates,
            "mse": r.mse,
            "distance": r.distance,
            "start": r.start,
        }
        for which in ("upload", "reconstruction"):
            values = logits[which]
            logit = None if values is None else values[i]
            record[which] = {
                "logit": logit,
                "realness_percentile": None
                if logit is None or rs is None
                else rs.percentile(logit),
            }
        records.append(record)
        shown = "" if r.label is None else f" as {classes[r.label]!r}"
        print(f"{image}: mse {r.mse:.4f}{shown} -> {args.out / (stem + '.side-by-side.png')}")
    from gan.projection import feature_network

    write_json_atomic(
        args.out / "projections.json",
        {
            "checkpoint": str(path),
            "model_id": ckpt.model_id,
            "options": options.__dict__,
            "distance": feature_network(ckpt.discriminator, ckpt.encoder)[1],
            "seconds": seconds,
            "projections": records,
        },
    )
    print(f"{len(results)} image(s) in {seconds:.1f} s; latents in {args.out / 'projections.json'}")
    return 0


def _png(encode: Any, chw: Any) -> bytes:
    arr = chw.numpy()
    return bytes(encode(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)))


def project_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-project``."""
    return run_command(lambda: project_cli(argv))
