"""``gan-train-encoder``: add an encoder to a GAN checkpoint (the start of a projection)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from gan.errors import UserError
from training.cli.common import apply_threads, run_command

if TYPE_CHECKING:
    from training.encoder import EncoderOptions


def build_encoder_parser() -> argparse.ArgumentParser:
    from training.encoder import EncoderOptions

    d = EncoderOptions()
    p = argparse.ArgumentParser(
        prog="gan-train-encoder",
        description="Train an encoder E on the checkpoint's own generator samples (image -> "
        "the latent G drew it from, and its class for a conditional G; training/encoder.py) "
        "and add it to the checkpoint as encoder.safetensors, atomically: G, D, their hashes "
        "and the model id stay. gan-project and POST /project start from it. Needs no data.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="a GAN checkpoint directory")
    p.add_argument("--steps", type=int, default=d.steps, help=f"updates ({d.steps})")
    p.add_argument(
        "--time-budget", type=float, default=0.0, help="stop after N seconds (0: the steps only)"
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size, help=f"({d.batch_size})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate ({d.lr:g})")
    p.add_argument(
        "--pixel-weight",
        type=float,
        default=d.pixel_weight,
        help=f"weight of the pixel loss of G(E(x)) against x ({d.pixel_weight:g}; 0: latent "
        "and class losses only, twice as fast per step)",
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"({d.seed})")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    return p


def add_encoder_to(path: Path, options: EncoderOptions, *, log: bool = True) -> dict[str, object]:
    """Train an encoder for the GAN checkpoint at ``path`` and add it there; the stored
    report."""
    from gan.checkpoint import add_encoder, load_checkpoint
    from gan.kinds import model_kind
    from training.encoder import train_encoder

    ckpt = load_checkpoint(path)
    if "encoder" not in model_kind(ckpt.kind).optional:
        raise UserError(
            f"{path} is {model_kind(ckpt.kind).what()}: only GAN checkpoints take an added "
            "encoder (an auto-encoder has its own)"
        )
    assert ckpt.generator is not None
    encoder, report = train_encoder(
        ckpt.generator,
        ckpt.model_config,
        options,
        log=(lambda line: print(line, file=sys.stderr, flush=True)) if log else None,
    )
    info = report.as_config()
    add_encoder(path, encoder, info)
    return info


def train_encoder_cli(argv: list[str] | None = None) -> int:

    from training.encoder import EncoderOptions

    args = build_encoder_parser().parse_args(argv)
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.lr <= 1 or args.pixel_weight < 0 or args.time_budget < 0:
        raise UserError("--lr must lie in (0, 1]; --pixel-weight and --time-budget >= 0")
    apply_threads(args.threads)
    options = EncoderOptions(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        pixel_weight=args.pixel_weight,
        seed=args.seed,
        time_budget_s=args.time_budget,
    )
    info = add_encoder_to(args.checkpoint, options, log=not args.quiet)
    acc = info["class_accuracy"]
    print(
        f"added an encoder to {args.checkpoint}: {info['steps']} steps in {info['seconds']} s; "
        f"on fresh samples latent MSE {info['latent_mse']}, reconstruction MSE "
        f"{info['pixel_mse']}" + ("" if acc is None else f", class accuracy {acc}")
    )
    return 0


def encoder_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-train-encoder``."""
    return run_command(lambda: train_encoder_cli(argv))
