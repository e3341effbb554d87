"""``gan-calibrate``: calibrate a checkpoint's discriminator on held-out real images."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from gan.errors import UserError
from training.cli.common import CliParser, calibration_line, run_command

if TYPE_CHECKING:
    from training.data import ImageData


def build_calibrate_parser() -> argparse.ArgumentParser:
    from training.data import DATASETS
    from training.export import CALIBRATION_IMAGES, CALIBRATION_SEED
    from training.refit import REFIT_BATCH, REFIT_BETAS, REFIT_LR

    p = CliParser(
        prog="gan-calibrate",
        description="Calibrate a checkpoint's discriminator: fit Platt scaling (or isotonic "
        "regression, when clearly better) of D's logit on held-out real images against fresh "
        "samples of G, measure its expected calibration error, and record the statistics "
        "discriminator rejection sampling needs. Stored in the checkpoint's config.json, "
        "atomically (the weights and their hashes do not change). Needed by --method drs and "
        "mh, and by /score's calibrated_probability. With --refit STEPS --out DIR, D is first "
        "trained on against the frozen G and the result is a new, calibrated checkpoint.",
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
    p.add_argument(
        "--refit",
        type=int,
        default=0,
        metavar="STEPS",
        help="first train a copy of D for STEPS more steps on the training images against "
        "fresh samples of the frozen G (the logistic loss, whose optimum is the log density "
        "ratio DRS and MH read; Azadi et al. 2019), then calibrate it; written as a new "
        "checkpoint at --out, the source stays as it is (default 0: no refit, calibrate the "
        "checkpoint in place)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="with --refit: the new checkpoint folder (must not exist, or be empty): the "
        "source's G (and encoder), the refit D and its calibration",
    )
    p.add_argument(
        "--refit-lr",
        type=float,
        default=None,
        help=f"with --refit: Adam's learning rate (default {REFIT_LR:g}, betas "
        f"{REFIT_BETAS[0]}, {REFIT_BETAS[1]})",
    )
    p.add_argument(
        "--refit-batch",
        type=int,
        default=None,
        help=f"with --refit: real images, and as many samples of G, per step ({REFIT_BATCH})",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def check_refit_out(out: Path | None, source: Path) -> Path:
    """The folder ``--refit`` may write to: given, not the source (nor inside it), absent or
    empty; else a :class:`UserError` saying what to do."""
    if out is None:
        raise UserError(
            "--refit writes a new checkpoint: give its folder with --out DIR (the source "
            f"{source} stays as it is)"
        )
    src, dst = source.resolve(), out.resolve()
    if dst == src or src in dst.parents:
        raise UserError(
            f"--out {out} is the source checkpoint {source} or inside it: give a new folder "
            "beside it; a refit never changes its source"
        )
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UserError(
            f"--out {out} already exists and is not an empty folder: give a new folder, or "
            "remove it first if you mean to replace it"
        )
    return out


def calibrate(argv: list[str] | None = None) -> int:
    import torch

    from gan.checkpoint import read_checkpoint_config
    from gan.latents import SEED_LIMIT
    from training.data import load_dataset, reload_run_folder
    from training.export import MIN_CALIBRATION_IMAGES, calibrate_checkpoint
    from training.refit import REFIT_BATCH, REFIT_LR, check_refit_options

    args = build_calibrate_parser().parse_args(argv)
    if args.num < MIN_CALIBRATION_IMAGES:
        raise UserError(f"--num must be at least {MIN_CALIBRATION_IMAGES}, got {args.num}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UserError(f"--seed must be in 0..{SEED_LIMIT - 1}, got {args.seed}")
    if args.refit < 0:
        raise UserError(f"--refit must be a number of steps >= 0 (0: no refit), got {args.refit}")
    refit = args.refit > 0
    if not refit:
        given = [
            name
            for name, value in (
                ("--out", args.out),
                ("--refit-lr", args.refit_lr),
                ("--refit-batch", args.refit_batch),
            )
            if value is not None
        ]
        if given:
            raise UserError(
                f"{', '.join(given)} only go with --refit STEPS (without it gan-calibrate "
                "calibrates the checkpoint in place)"
            )
    lr = REFIT_LR if args.refit_lr is None else args.refit_lr
    batch = REFIT_BATCH if args.refit_batch is None else args.refit_batch
    if refit:
        check_refit_options(args.refit, lr, batch)
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    config = read_checkpoint_config(args.checkpoint)  # fail fast on a broken checkpoint
    if refit:
        if config.kind != "gan":
            raise UserError(
                f"{args.checkpoint} is a {config.kind} checkpoint: --refit trains D against "
                "samples of G and needs both; only GAN checkpoints are refit"
            )
        check_refit_out(args.out, args.checkpoint)
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

        def mnist(split: str) -> ImageData:
            return load_dataset(
                "mnist",
                args.data_dir,
                resolution=mc.resolution,
                channels=mc.channels,
                split=split,
                progress=progress,
            )

        held = mnist("test")
        source = "MNIST test set (never trained on)"
        train = mnist("train") if refit else None
        train_source = "MNIST train set"
    else:
        if args.data_dir is None:
            raise UserError(
                "--data folder needs --data-dir: the folder the checkpoint was trained on"
            )
        train, held = reload_run_folder(
            config, args.checkpoint, args.data_dir, cache_dir=args.cache_dir, progress=progress
        )
        source = f"{len(held)} images held out of the folder {args.data_dir.name} (seeded split)"
        train_source = f"the {len(train)} training images of the folder {args.data_dir.name}"
    if refit:
        assert train is not None and args.out is not None
        return _refit(args, train, held, source, train_source, lr, batch)
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


def _refit(
    args: argparse.Namespace,
    train: ImageData,
    held: ImageData,
    source: str,
    train_source: str,
    lr: float,
    batch: int,
) -> int:
    from gan.checkpoint import read_checkpoint_config
    from training.refit import refit_checkpoint

    if not args.quiet:
        print(
            f"refitting D of {args.checkpoint} for {args.refit} steps (lr {lr:g}, batch {batch}) "
            f"on {train_source} against fresh samples of the frozen G ..."
        )
    refit_checkpoint(
        args.checkpoint,
        args.out,
        train.images,
        train.labels,
        held.images,
        held.labels,
        steps=args.refit,
        lr=lr,
        batch=batch,
        num=args.num,
        calibration_seed=args.seed,
        train_source=train_source,
        real_source=source,
        progress=not args.quiet,
    )
    written = read_checkpoint_config(args.out)
    record, entry = written.refit, written.calibration
    assert record is not None and entry is not None
    before, after = record.heldout_bce_before, record.heldout_bce_after
    n_real, n_fake = record.raw["heldout_real_images"], record.raw["heldout_fake_images"]
    verdict = (
        "improved"
        if after < before
        else "did NOT improve: fewer --refit steps or a lower --refit-lr may do better"
    )
    print(
        f"held-out BCE of D (nats, {n_real} held-out reals vs {n_fake} fresh samples; a coin "
        f"scores {math.log(2):.3f}): {before:.4f} before, {after:.4f} after the refit ({verdict})"
    )
    print(f"calibrated the refit D: {calibration_line(entry.raw)}")
    print(
        f"wrote {args.out} ({written.model_id}): the source's G"
        + (" and encoder" if "encoder.safetensors" in written.file_hashes else "")
        + f" unchanged, the refit D, its calibration; {args.checkpoint} is unchanged"
    )
    return 0


def calibrate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-calibrate``; returns the exit status (2 for user errors)."""
    return run_command(lambda: calibrate(argv))
