"""Command-line entry points: ``gan-train``, ``gan-sample`` and ``gan-eval``.

User errors (bad paths, bad options, broken checkpoints or data) print one ``error: ...`` line
and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.errors import UserError


def _run(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------------------------
# gan-train
# --------------------------------------------------------------------------------------------


def build_train_parser() -> argparse.ArgumentParser:
    from training.loop import TrainConfig
    from training.models import ARCHITECTURES, ModelConfig

    d, m = TrainConfig(), ModelConfig()
    p = argparse.ArgumentParser(
        prog="gan-train",
        description="Train a GAN (G and D) on MNIST or a folder of images and write checkpoints.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=["mnist", "folder"], default="mnist", help="dataset kind")
    g.add_argument("--data-dir", type=Path, default=None,
                   help="MNIST IDX folder (default $GAN_DATA_DIR or ../shared/data/mnist) or image folder")
    g.add_argument("--download", action="store_true", help="download MNIST if missing (verified by SHA-256)")
    g.add_argument("--cache-dir", type=Path, default=None, help="where folder datasets are cached")
    g.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    g = p.add_argument_group("model")
    g.add_argument("--resolution", type=int, default=m.resolution, choices=[28, 32, 64])
    g.add_argument("--channels", type=int, default=m.channels, choices=[1, 3])
    g.add_argument("--z-dim", type=int, default=m.z_dim)
    g.add_argument("--g-width", type=int, default=m.g_width)
    g.add_argument("--d-width", type=int, default=m.d_width)
    g.add_argument("--arch", choices=ARCHITECTURES, default=m.arch)
    g = p.add_argument_group("optimisation")
    g.add_argument("--steps", type=int, default=d.steps, help="G updates (iterations)")
    g.add_argument("--batch-size", type=int, default=d.batch_size)
    g.add_argument("--d-steps", type=int, default=d.d_steps, help="D updates per G update")
    g.add_argument("--loss", choices=["nonsat", "minimax", "hinge"], default=d.loss)
    g.add_argument("--lr-g", type=float, default=d.lr_g)
    g.add_argument("--lr-d", type=float, default=d.lr_d)
    g.add_argument("--beta1", type=float, default=d.beta1)
    g.add_argument("--beta2", type=float, default=d.beta2)
    g.add_argument("--r1-gamma", type=float, default=d.r1_gamma, help="R1 weight on real images (0: off)")
    g.add_argument("--r1-every", type=int, default=d.r1_every, help="lazy R1 interval")
    g.add_argument("--ema-decay", type=float, default=d.ema_decay, help="EMA of G (0: off)")
    g.add_argument("--ema-warmup", type=int, default=d.ema_warmup)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: torch default)")
    g.add_argument("--no-channels-last", action="store_true", help="disable channels_last tensors")
    g.add_argument("--time-budget", type=float, default=0.0, help="stop after N seconds of training")
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="run folder (default runs/<time>)")
    g.add_argument("--resume", type=Path, default=None,
                   help="continue from a run folder or a checkpoint with training state (its "
                   "options are kept; --steps and --time-budget given here override them)")
    g.add_argument("--export", type=Path, default=None,
                   help="also write the final (best, else latest) checkpoint here, without training state")
    g.add_argument("--sample-every", type=int, default=d.sample_every)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every)
    g.add_argument("--eval-every", type=int, default=d.eval_every)
    g.add_argument("--eval-samples", type=int, default=d.eval_samples)
    g.add_argument("--no-eval", action="store_true", help="skip the quick FID used to pick 'best'")
    g.add_argument("--keep-last", type=int, default=d.keep_last)
    g.add_argument("--log-every", type=int, default=d.log_every)
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _train_config(args: argparse.Namespace) -> Any:
    from training.loop import TrainConfig, TrainingError
    from training.models import ConfigError, ModelConfig

    try:
        model = ModelConfig(
            resolution=args.resolution, channels=args.channels, z_dim=args.z_dim,
            g_width=args.g_width, d_width=args.d_width, arch=args.arch,
        )
        return TrainConfig(
            steps=args.steps, batch_size=args.batch_size, d_steps=args.d_steps, loss=args.loss,
            lr_g=args.lr_g, lr_d=args.lr_d, beta1=args.beta1, beta2=args.beta2,
            r1_gamma=args.r1_gamma, r1_every=args.r1_every, ema_decay=args.ema_decay,
            ema_warmup=args.ema_warmup, seed=args.seed, threads=args.threads,
            channels_last=not args.no_channels_last, sample_every=args.sample_every,
            checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
            eval_samples=args.eval_samples, keep_last=args.keep_last, log_every=args.log_every,
            time_budget_s=args.time_budget, model=model,
        )
    except (ConfigError, TypeError) as exc:
        raise TrainingError(str(exc)) from exc


def load_training_data(
    kind: str, data_dir: Path | None, resolution: int, channels: int, *, download: bool = False,
    cache_dir: Path | None = None, limit: int | None = None, seed: int = 0,
    heldout_fraction: float = 0.05, progress: bool = True,
) -> tuple[Any, Any]:
    """(training data, held-out real images for D's score quantiles)."""
    from training.data import load_dataset
    from training.loop import split_heldout

    data = load_dataset(
        kind, data_dir, resolution=resolution, channels=channels, split="train",
        download=download, cache_dir=cache_dir, limit=limit, progress=progress,
    )
    if kind == "mnist":
        test = load_dataset(
            "mnist", data_dir, resolution=resolution, channels=channels, split="test",
            progress=progress,
        )
        data.info["heldout_source"] = "MNIST test set (10,000 images, never trained on)"
        return data, test.images
    data, held = split_heldout(data, heldout_fraction, seed)
    data.info["heldout_source"] = f"{len(held)} images held out of the folder (seeded split)"
    return data, held


def _make_evaluator(kind: str, disabled: bool, data_dir: Path | None) -> Callable[[Any], float] | None:
    if disabled or kind != "mnist":
        return None
    try:
        from training.evaluate import Evaluator, default_classifier_dir
    except ImportError:
        return None
    if not (default_classifier_dir() / "config.json").is_file():
        logging.getLogger(__name__).warning("no classifier found; 'best' falls back to latest")
        return None
    ev = Evaluator(data_dir=data_dir)
    return ev.quick_fid


def _given(flag: str, argv: list[str] | None) -> bool:
    """Whether ``flag`` was on the command line (resume keeps the run's value otherwise)."""
    args = sys.argv[1:] if argv is None else argv
    return any(a == flag or a.startswith(flag + "=") for a in args)


def train(argv: list[str] | None = None) -> int:
    from training.checkpoint import (
        CheckpointManager,
        copy_checkpoint,
        is_checkpoint,
        load_checkpoint,
    )
    from training.loop import Trainer, TrainingError, resume_trainer

    args = build_train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    progress = not args.no_progress
    if args.resume is not None:
        src = args.resume
        if not is_checkpoint(src):
            latest = CheckpointManager(src).root / "latest"
            if not is_checkpoint(latest):
                raise TrainingError(f"--resume {src}: neither a checkpoint nor a run folder with checkpoints/latest")
            src = latest
        run_dir = args.out or (src.parent.parent if src.parent.name == "checkpoints" else src.parent)
        state = load_checkpoint(src, with_train_state=True).train_state
        if not isinstance(state, dict) or "train_config" not in state:
            raise TrainingError(f"--resume {src}: its training state lacks train_config")
        state_cfg = state["train_config"]
        mc = state_cfg["model"]
        data, held = load_training_data(
            args.data, args.data_dir, mc["resolution"], mc["channels"], download=args.download,
            cache_dir=args.cache_dir, limit=args.limit, seed=state_cfg["seed"], progress=progress,
        )
        evaluator = _make_evaluator(args.data, args.no_eval, args.data_dir)
        trainer = resume_trainer(
            src, data, run_dir, heldout=held, evaluator=evaluator,
            steps=args.steps if _given("--steps", argv) else None,
            time_budget_s=args.time_budget if _given("--time-budget", argv) else None,
            progress=progress,
        )
        print(f"resuming {src} at step {trainer.step} -> {trainer.cfg.steps}", file=sys.stderr)
    else:
        cfg = _train_config(args)
        run_dir = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        data, held = load_training_data(
            args.data, args.data_dir, cfg.model.resolution, cfg.model.channels,
            download=args.download, cache_dir=args.cache_dir, limit=args.limit, seed=cfg.seed,
            progress=progress,
        )
        evaluator = _make_evaluator(args.data, args.no_eval, args.data_dir)
        trainer = Trainer(cfg, data, run_dir, heldout=held, evaluator=evaluator, progress=progress)
    last = trainer.fit()
    print(f"run folder: {run_dir}")
    print(f"latest checkpoint: {last}")
    if args.export is not None:
        best = trainer.manager.root / "best"
        src = best if is_checkpoint(best) else last
        load_checkpoint(src)  # validate before publishing it
        copy_checkpoint(src, args.export, with_train_state=False)
        print(f"exported {src} -> {args.export}")
    return 0


def train_main(argv: list[str] | None = None) -> int:
    return _run(lambda: train(argv))


# --------------------------------------------------------------------------------------------
# gan-sample
# --------------------------------------------------------------------------------------------


def sample(argv: list[str] | None = None) -> int:
    import torch

    from service.latents import (
        SEED_LIMIT,
        TRUNCATION_MAX,
        TRUNCATION_MIN,
        image_seeds,
        latents_for_seeds,
    )
    from training.checkpoint import load_checkpoint
    from training.images import save_images
    from training.loop import generate_uint8

    p = argparse.ArgumentParser(
        prog="gan-sample",
        description=(
            "Sample images from a checkpoint's generator. Same seed, same bytes. Image i uses "
            "the image seed (seed + i), exactly as POST /generate does, so the API and the CLI "
            "give the same images for the same seed."
        ),
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--num", type=int, default=64, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image (0 .. 2**53-1)")
    p.add_argument("--truncation", type=float, default=None,
                   help="redraw latent components with |z| > t (0.05 .. 10)")
    p.add_argument("--out", type=Path, required=True,
                   help="FILE.npy (uint8 [N,H,W] or [N,H,W,C]), FILE.png (grid) or a folder of PNGs")
    args = p.parse_args(argv)
    if not 1 <= args.num <= 100_000:
        raise UserError(f"--num must be in 1..100000, got {args.num}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UserError(f"--seed must be in 0..{SEED_LIMIT - 1}, got {args.seed}")
    if args.truncation is not None and not TRUNCATION_MIN <= args.truncation <= TRUNCATION_MAX:
        raise UserError(f"--truncation must be in {TRUNCATION_MIN}..{TRUNCATION_MAX}")
    if args.out.suffix.lower() not in (".npy", ".png", ""):
        raise UserError(f"--out {args.out}: use a .npy file, a .png file, or a folder name")
    ck = load_checkpoint(args.checkpoint)
    z = latents_for_seeds(image_seeds(args.seed, args.num), ck.model_config.z_dim, args.truncation)
    with torch.inference_mode():
        images = generate_uint8(ck.generator, z)
    out = save_images(images, args.out)
    print(f"wrote {args.num} images from {ck.model_id} to {out}")
    return 0


def sample_main(argv: list[str] | None = None) -> int:
    return _run(lambda: sample(argv))


# --------------------------------------------------------------------------------------------
# gan-eval (implemented in training.evaluate)
# --------------------------------------------------------------------------------------------


def eval_main(argv: list[str] | None = None) -> int:
    from training.evaluate import run_eval_cli

    return run_eval_cli(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
