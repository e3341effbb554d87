"""Command-line entry points: ``gan-train``, ``gan-sample`` and ``gan-eval``.

Thin: they parse options and call the library. Any :class:`gan.errors.UserError` (bad paths,
options, broken checkpoints, classifiers or data) prints one ``error: ...`` line and exits with
status 2; they never show a traceback for something the user can fix.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gan.errors import UserError


def _run(fn: Callable[[], int]) -> int:
    try:
        return fn()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse: usage error (2) or --help (0), already printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2


# --------------------------------------------------------------------------------------------
# gan-train
# --------------------------------------------------------------------------------------------

#: Options that ``--resume`` may change; every other option is the run's own.
RESUME_OVERRIDES = ("steps", "time_budget_s")


def build_train_parser() -> argparse.ArgumentParser:
    from training.config import add_config_arguments
    from training.data import DATASETS

    p = argparse.ArgumentParser(
        prog="gan-train",
        description="Train a GAN (G and D) on MNIST or a folder of images and write checkpoints.",
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", choices=DATASETS, default=None,
                   help="dataset kind (default mnist; --resume: the run's own)")
    g.add_argument("--data-dir", type=Path, default=None,
                   help="MNIST IDX folder (default $GAN_DATA_DIR or ../shared/data/mnist) or image folder")
    g.add_argument("--download", action="store_true", help="download MNIST if missing (verified by SHA-256)")
    g.add_argument("--cache-dir", type=Path, default=None, help="where folder datasets are cached")
    g.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    add_config_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="run folder (default runs/<time>)")
    g.add_argument("--resume", type=Path, default=None,
                   help="continue from a run folder or a checkpoint with training state (its "
                   "options are kept; --steps and --time-budget given here override them)")
    g.add_argument("--export", type=Path, default=None,
                   help="also write the final (best, else latest) checkpoint here, without training state")
    g.add_argument("--no-eval", action="store_true", help="skip the quick FID used to pick 'best'")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _make_evaluator(kind: str, disabled: bool, data_dir: Path | None) -> Callable[[Any], float] | None:
    if disabled or kind != "mnist":
        return None
    from training.metrics.classifier import default_classifier_dir
    from training.metrics.evaluator import Evaluator

    if not (default_classifier_dir() / "config.json").is_file():
        logging.getLogger(__name__).warning("no classifier found; 'best' falls back to latest")
        return None
    return Evaluator(data_dir=data_dir).quick_fid


def _resume_source(path: Path) -> Path:
    from gan.checkpoint import is_checkpoint
    from training.config import TrainingError

    if is_checkpoint(path):
        return path
    latest = path / "checkpoints" / "latest"
    if not is_checkpoint(latest):
        raise TrainingError(f"--resume {path}: neither a checkpoint nor a run folder with checkpoints/latest")
    return latest


def _data_source(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """--data, --data-dir and --limit: as given for a new run; for --resume, the run's own
    unless given again, and never different data."""
    from training.config import TrainingError

    given = {"data": args.data, "data_dir": args.data_dir, "limit": args.limit}
    if not saved:  # a new run, or a run saved before data sources were recorded
        return {**given, "data": args.data or "mnist"}
    for key in ("data", "limit"):
        if given[key] is not None and given[key] != saved.get(key):
            flag = "--" + key.replace("_", "-")
            raise TrainingError(
                f"--resume: the run trained with {flag} {saved.get(key)}; {flag} {given[key]} "
                "would change its data (start a new run for other data)"
            )
    data_dir = args.data_dir if args.data_dir is not None else saved.get("data_dir")
    return {"data": saved.get("data") or "mnist", "data_dir": data_dir, "limit": saved.get("limit")}


class _StopOnSignal:
    """SIGINT (Ctrl+C) and SIGTERM ask the trainer to stop after the current step; it saves a
    checkpoint and the loss plot, and gan-train exits 130 / 143. A second signal stops at once."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.trainer.stop_signal is not None:  # the second one: stop now
            raise KeyboardInterrupt
        print(f"\nsignal {signum}: stopping after this step and saving a checkpoint "
              "(again to stop at once)", file=sys.stderr)  # fmt: skip
        self.trainer.request_stop(signum)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def train(argv: list[str] | None = None) -> int:
    from training.config import (
        TrainingError,
        config_from_options,
        given_options,
        option_names,
    )
    from training.data import load_training_data
    from training.export import export_checkpoint
    from training.loop import Interrupted, Trainer, read_resume_state, resume_trainer

    args = build_train_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    progress = not args.no_progress
    options = given_options(args)
    resume_state = None
    if args.resume is not None:
        src = _resume_source(args.resume)
        fixed = sorted(set(options) - set(RESUME_OVERRIDES))
        if fixed:
            raise TrainingError(
                f"--resume keeps the run's own options; {option_names(fixed)} cannot change "
                f"(only {option_names(list(RESUME_OVERRIDES))} can)"
            )
        run_dir = args.out or (src.parent.parent if src.parent.name == "checkpoints" else src.parent)
        saved_cfg, state = read_resume_state(src)
        cfg = config_from_options(options, base=saved_cfg)
        source = _data_source(args, state.get("data_source"))
        resume_state = (cfg, state)
    else:
        cfg = config_from_options(options)
        run_dir = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        source = _data_source(args, None)
    data, held = load_training_data(
        source["data"], source["data_dir"], cfg.model.resolution, cfg.model.channels,
        download=args.download, cache_dir=args.cache_dir, limit=source["limit"], seed=cfg.seed,
        progress=progress,
    )  # fmt: skip
    saved_fingerprint = resume_state[1].get("data_source", {}).get("fingerprint") if resume_state else None
    if saved_fingerprint and data.info.get("fingerprint") != saved_fingerprint:
        raise TrainingError(
            f"--resume: the images in {source['data_dir']} are not the ones the run trained on "
            "(their fingerprint differs); point --data-dir at the original folder"
        )
    evaluator = _make_evaluator(source["data"], args.no_eval, source["data_dir"])
    if resume_state is not None:
        trainer = resume_trainer(
            src, data, run_dir, heldout=held, evaluator=evaluator, progress=progress,
            resume_state=resume_state,
        )  # fmt: skip
        print(f"resuming {src} at step {trainer.step} -> {trainer.cfg.steps}", file=sys.stderr)
    else:
        trainer = Trainer(cfg, data, run_dir, heldout=held, evaluator=evaluator, progress=progress)
    trainer.data_source = {
        **source,
        "data_dir": None if source["data_dir"] is None else str(Path(source["data_dir"]).resolve()),
        "fingerprint": data.info.get("fingerprint"),
    }
    try:
        with _StopOnSignal(trainer):
            last = trainer.fit()
    except Interrupted as stop:
        print(f"interrupted: saved {stop.checkpoint}; continue with gan-train --resume {run_dir}",
              file=sys.stderr)  # fmt: skip
        return 128 + stop.signum
    print(f"run folder: {run_dir}")
    print(f"latest checkpoint: {last}")
    if args.export is not None:
        best = trainer.manager.root / "best"
        src = best if (best / "config.json").is_file() else last
        export_checkpoint(src, args.export)
        print(f"exported {src} -> {args.export}")
    return 0


def train_main(argv: list[str] | None = None) -> int:
    return _run(lambda: train(argv))


# --------------------------------------------------------------------------------------------
# gan-sample
# --------------------------------------------------------------------------------------------


def sample(argv: list[str] | None = None) -> int:
    from gan.checkpoint import load_checkpoint
    from gan.io import save_images
    from gan.latents import SEED_LIMIT, TRUNCATION_MAX, TRUNCATION_MIN
    from gan.sampling import resolve_label
    from gan.sampling import sample as draw

    p = argparse.ArgumentParser(
        prog="gan-sample",
        description=(
            "Sample images from a checkpoint's generator. Same seed, same bytes. Image i uses "
            "the image seed (seed + i), exactly as POST /generate and gan-eval do, so the API, "
            "the evaluation and this command see the same images for the same seed."
        ),
    )
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--num", type=int, default=64, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image (0 .. 2**53-1)")
    p.add_argument("--truncation", type=float, default=None,
                   help="redraw latent components with |z| > t (0.05 .. 10)")
    p.add_argument("--label", action="append", default=None, metavar="CLASS",
                   help="class-conditional models: the class (index or name) of the images; "
                   "repeat it to cycle through several (image i gets the (i mod L)-th); left "
                   "out: image seed s gets class s mod K, as in POST /generate")
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
    labels: list[int] | None = None
    if args.label:
        given = [resolve_label(v, ck.config.classes) for v in args.label]
        labels = [given[i % len(given)] for i in range(args.num)]
    images = draw(
        ck.generator, ck.model_config.z_dim, seed=args.seed, n=args.num,
        truncation=args.truncation, num_classes=ck.model_config.num_classes, labels=labels,
    )  # fmt: skip
    try:
        out = save_images(images, args.out)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(f"wrote {args.num} images from {ck.model_id} to {out}")
    return 0


def sample_main(argv: list[str] | None = None) -> int:
    return _run(lambda: sample(argv))


# --------------------------------------------------------------------------------------------
# gan-eval
# --------------------------------------------------------------------------------------------


def build_eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gan-eval",
        description="Evaluate a generator checkpoint against MNIST test in the feature space of "
        "the project's MNIST classifier (FID, KID, precision/recall, class coverage), beside a "
        "real-vs-real baseline; or train that classifier. Image i of --seed S uses the image "
        "seed S + i, so gan-eval evaluates exactly the images gan-sample --seed S writes.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", type=Path, help="checkpoint directory to evaluate")
    mode.add_argument(
        "--train-classifier", action="store_true",
        help="train the evaluation classifier on MNIST and write it to --out",
    )
    p.add_argument("--data-dir", type=Path, default=None,
                   help="folder with the MNIST IDX files (default: $GAN_DATA_DIR or the shared copy)")
    p.add_argument("--seed", type=int, default=0, help="sampling / subset / training seed (0)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: 1 for --train-classifier, torch's own otherwise)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    ev = p.add_argument_group("evaluation (--checkpoint)")
    ev.add_argument("--num", type=int, default=10000, help="number of samples (10000)")
    ev.add_argument("--batch-size", type=int, default=500, help="generator batch size (500)")
    ev.add_argument("--classifier", type=Path, default=None,
                    help="classifier directory (default: $GAN_CLASSIFIER_DIR or the shipped "
                    "checkpoints/mnist-classifier)")
    ev.add_argument("--write", action="store_true",
                    help="store the metrics in the checkpoint's config.json under 'metrics'")
    ev.add_argument("--json", type=Path, default=None, help="write the full result as JSON here")
    ev.add_argument("--allow-non-mnist", action="store_true",
                    help="evaluate a checkpoint not trained on MNIST anyway")
    tr = p.add_argument_group("classifier training (--train-classifier)")
    tr.add_argument("--out", type=Path, default=None,
                    help="output directory (default: the shipped checkpoints/mnist-classifier)")
    tr.add_argument("--epochs", type=int, default=3, help="training epochs (3)")
    tr.add_argument("--min-accuracy", type=float, default=0.99,
                    help="refuse to write a classifier below this test accuracy (0.99)")
    return p


def _train_classifier(args: argparse.Namespace, argv: list[str]) -> int:
    from training.metrics.classifier import default_classifier_dir, train_classifier

    out = args.out if args.out is not None else default_classifier_dir()
    cfg = train_classifier(
        args.data_dir, out, epochs=args.epochs, seed=args.seed,
        threads=args.threads if args.threads is not None else 1,
        min_accuracy=args.min_accuracy,
        command="gan-eval " + shlex.join(argv), progress=not args.quiet,
    )  # fmt: skip
    print(
        f"wrote {out}: test accuracy {cfg['test_accuracy']:.4f}, "
        f"{cfg['num_parameters']} parameters, {cfg['training']['seconds']:.0f} s"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from gan.checkpoint import read_checkpoint_config, update_config
    from gan.io import write_json_atomic
    from training.metrics.evaluator import Evaluator, check_dataset
    from training.metrics.metrics import EvalError
    from training.metrics.report import format_report, metrics_for_config

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Fail fast, before the classifier and the reference set are loaded.
    if args.num < 2 or args.batch_size < 1:
        raise EvalError(f"--num must be >= 2 and --batch-size >= 1, got {args.num} and {args.batch_size}")
    check_dataset(read_checkpoint_config(args.checkpoint), args.checkpoint, args.allow_non_mnist)
    evaluator = Evaluator(args.classifier, args.data_dir)
    result = evaluator.evaluate_checkpoint(
        args.checkpoint, num_samples=args.num, seed=args.seed, batch_size=args.batch_size,
        allow_non_mnist=args.allow_non_mnist,
    )  # fmt: skip
    print(format_report(result))
    if args.json is not None:
        try:
            write_json_atomic(args.json, result)
        except OSError as exc:
            raise EvalError(f"cannot write {args.json}: {exc}") from exc
        print(f"wrote {args.json}")
    if args.write:
        try:
            update_config(args.checkpoint, {"metrics": metrics_for_config(result)})
        except OSError as exc:
            raise EvalError(f"cannot update {args.checkpoint}/config.json: {exc}") from exc
        print(
            f"stored the metrics in {args.checkpoint}/config.json under 'metrics' (only "
            "config.json changed: the weight files, their SHA-256 hashes and the checkpoint "
            "hash are unchanged)"
        )
    return 0


def eval_cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_eval_parser().parse_args(argv)
    if args.train_classifier:
        return _train_classifier(args, argv)
    return _evaluate(args)


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-eval``; returns the exit status (2 for user errors)."""
    return _run(lambda: eval_cli(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
