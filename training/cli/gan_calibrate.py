"""``gan-calibrate``: calibrate a checkpoint's discriminator on held-out real images."""

from __future__ import annotations

import argparse
from pathlib import Path

from gan.errors import UserError
from training.cli.common import CliParser, calibration_line, run_command


def build_calibrate_parser() -> argparse.ArgumentParser:
    from training.data import DATASETS
    from training.export import CALIBRATION_IMAGES, CALIBRATION_SEED

    p = CliParser(
        prog="gan-calibrate",
        description="Calibrate a checkpoint's discriminator: fit Platt scaling (or isotonic "
        "regression, when clearly better) of D's logit on held-out real images against fresh "
        "samples of G, measure its expected calibration error, and record the statistics "
        "discriminator rejection sampling needs. Stored in the checkpoint's config.json, "
        "atomically (the weights and their hashes do not change). Needed by --method drs and "
        "mh, and by /score's calibrated_probability.",
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    p.add_argument(
        "--data",
        choices=DATASETS,
        default=None,
        help="where the held-out real images come from: mnist (its test set; the "
        "default for MNIST checkpoints) or folder (the share of --data-dir that "
        "training held out, by the checkpoint's seed)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="MNIST IDX folder (default $GAN_DATA_DIR or ../shared/data/mnist) or the "
        "image folder the checkpoint was trained on",
    )
    p.add_argument("--cache-dir", type=Path, default=None, help="where folder datasets are cached")
    p.add_argument(
        "--num",
        type=int,
        default=CALIBRATION_IMAGES,
        help=f"held-out reals used at most, and G samples drawn ({CALIBRATION_IMAGES})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=CALIBRATION_SEED,
        help=f"image seed of G's first sample ({CALIBRATION_SEED})",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def calibrate(argv: list[str] | None = None) -> int:
    import torch

    from gan.checkpoint import read_checkpoint_config
    from gan.latents import SEED_LIMIT
    from training.data import load_dataset, reload_run_folder
    from training.export import MIN_CALIBRATION_IMAGES, calibrate_checkpoint

    args = build_calibrate_parser().parse_args(argv)
    if args.num < MIN_CALIBRATION_IMAGES:
        raise UserError(f"--num must be at least {MIN_CALIBRATION_IMAGES}, got {args.num}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UserError(f"--seed must be in 0..{SEED_LIMIT - 1}, got {args.seed}")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    config = read_checkpoint_config(args.checkpoint)  # fail fast on a broken checkpoint
    mc, trained_on = config.model, config.dataset_name
    kind = args.data or ("mnist" if trained_on == "mnist" else None)
    if kind is None:
        raise UserError(
            f"{args.checkpoint} was trained on {trained_on!r}, not MNIST: give its held-out real "
            "images with --data folder --data-dir DIR (the folder it was trained on)"
        )
    progress = not args.quiet
    if kind == "mnist":
        if trained_on != "mnist":
            raise UserError(
                f"{args.checkpoint} was trained on {trained_on!r}; MNIST's test set is no "
                "held-out data of it: use --data folder --data-dir DIR"
            )
        held = load_dataset(
            "mnist",
            args.data_dir,
            resolution=mc.resolution,
            channels=mc.channels,
            split="test",
            progress=progress,
        )
        source = "MNIST test set (never trained on)"
    else:
        if args.data_dir is None:
            raise UserError(
                "--data folder needs --data-dir: the folder the checkpoint was trained on"
            )
        _, held = reload_run_folder(
            config, args.checkpoint, args.data_dir, cache_dir=args.cache_dir, progress=progress
        )
        source = f"{len(held)} images held out of the folder {args.data_dir.name} (seeded split)"
    entry = calibrate_checkpoint(
        args.checkpoint,
        held.images,
        held.labels,
        num=args.num,
        seed=args.seed,
        real_source=source,
    )
    print(f"calibrated D on {args.checkpoint}: {calibration_line(entry)}")
    print(
        f"stored under 'calibration' in {args.checkpoint}/config.json (only config.json "
        "changed: the weight files, their SHA-256 hashes and the checkpoint hash are unchanged)"
    )
    return 0


def calibrate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-calibrate``; returns the exit status (2 for user errors)."""
    return run_command(lambda: calibrate(argv))
