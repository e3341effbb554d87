"""``gan-eval``: a checkpoint's metrics in the MNIST classifier's feature space, or that
classifier's training."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from training.cli.common import CliParser, run_command
from training.cli.methods import add_method_arguments, method_options


def build_eval_parser() -> argparse.ArgumentParser:
    p = CliParser(
        prog="gan-eval",
        description="Evaluate a generator checkpoint against MNIST test in the feature space of "
        "the project's MNIST classifier (FID, KID, precision/recall, class coverage), beside a "
        "real-vs-real baseline; or train that classifier. Image i of --seed S uses the image "
        "seed S + i, so gan-eval evaluates exactly the images gan-sample --seed S writes.",
    )
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--checkpoint", type=Path, help="checkpoint directory to evaluate")
    mode.add_argument(
        "--train-classifier",
        action="store_true",
        help="train the evaluation classifier on MNIST and write it to --out",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the MNIST IDX files (default: $GAN_DATA_DIR or the shared copy)",
    )
    p.add_argument("--seed", type=int, default=0, help="sampling / subset / training seed (0)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: 1 for --train-classifier, torch's own otherwise)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    ev = p.add_argument_group("evaluation (--checkpoint)")
    ev.add_argument(
        "-n",
        "--n",
        "--num",
        dest="num",
        type=int,
        default=10000,
        help="number of samples (10000; n, as in POST /generate; --num also works)",
    )
    ev.add_argument("--batch-size", type=int, default=500, help="generator batch size (500)")
    ev.add_argument(
        "--classifier",
        type=Path,
        default=None,
        help="classifier directory (default: $GAN_CLASSIFIER_DIR or the shipped "
        "checkpoints/mnist-classifier)",
    )
    ev.add_argument(
        "--write",
        action="store_true",
        help="store the metrics in the checkpoint's config.json under 'metrics'",
    )
    ev.add_argument("--json", type=Path, default=None, help="write the full result as JSON here")
    ev.add_argument(
        "--allow-non-mnist",
        action="store_true",
        help="evaluate a checkpoint not trained on MNIST anyway",
    )
    ev.add_argument(
        "--memorisation",
        type=int,
        default=1000,
        metavar="N",
        help="memorisation check on the first N samples and N held-out real images: their "
        "distances to the nearest training image (0: off; 1000)",
    )
    ev.add_argument(
        "--pairs",
        type=Path,
        default=None,
        help="PNG of the 16 samples closest to a training image, each beside it (default: "
        "beside --json as <name>.pairs.png; without either, no PNG)",
    )
    add_method_arguments(ev)
    tr = p.add_argument_group("classifier training (--train-classifier)")
    tr.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: the shipped checkpoints/mnist-classifier)",
    )
    tr.add_argument("--epochs", type=int, default=3, help="training epochs (3)")
    tr.add_argument(
        "--min-accuracy",
        type=float,
        default=0.99,
        help="refuse to write a classifier below this test accuracy (0.99)",
    )
    return p


def _train_classifier(args: argparse.Namespace, argv: list[str]) -> int:
    from training.metrics.classifier import default_classifier_dir, train_classifier

    out = args.out if args.out is not None else default_classifier_dir()
    cfg = train_classifier(
        args.data_dir,
        out,
        epochs=args.epochs,
        seed=args.seed,
        threads=args.threads if args.threads is not None else 1,
        min_accuracy=args.min_accuracy,
        command="gan-eval " + shlex.join(argv),
        progress=not args.quiet,
    )
    print(
        f"wrote {out}: test accuracy {cfg['test_accuracy']:.4f}, "
        f"{cfg['num_parameters']} parameters, {cfg['training']['seconds']:.0f} s"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from gan.checkpoint import read_checkpoint_config, update_config
    from gan.samplers import METHODS, calibration_missing, check_kind
    from training.metrics.evaluator import Evaluator, check_dataset
    from training.metrics.metrics import EvalError
    from training.metrics.report import format_report, metrics_for_config

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # Fail fast, before the classifier and the reference set are loaded.
    if args.num < 2 or args.batch_size < 1:
        raise EvalError(
            f"--num must be >= 2 and --batch-size >= 1, got {args.num} and {args.batch_size}"
        )
    if args.memorisation < 0:
        raise EvalError(f"--memorisation must be >= 0 (0: off), got {args.memorisation}")
    pairs = args.pairs
    if pairs is None and args.json is not None:
        pairs = args.json.with_suffix(".pairs.png")
    options = method_options(args)
    if args.write and args.method != "plain":
        raise EvalError(
            "--write stores the model's own metrics in config.json, which describe plain "
            f"sampling; --method {args.method} measures a sampler on top (keep those with --json)"
        )
    config = read_checkpoint_config(args.checkpoint)
    if _is_folder_run(config.dataset) and not args.allow_non_mnist:
        return _evaluate_folder(args, pairs)
    check_dataset(config, args.checkpoint, args.allow_non_mnist)
    check_kind(config.kind, args.method, options)  # e.g. drs on a vae: refused before loading
    if METHODS[args.method].needs_calibration and config.calibration is None:
        raise calibration_missing(args.method, args.checkpoint)
    evaluator = Evaluator(args.classifier, args.data_dir)
    result = evaluator.evaluate_checkpoint(
        args.checkpoint,
        num_samples=args.num,
        seed=args.seed,
        batch_size=args.batch_size,
        allow_non_mnist=args.allow_non_mnist,
        options=options,
        memorisation_n=args.memorisation,
        pairs_png=pairs if args.memorisation > 0 else None,
    )
    print(format_report(result))
    _write_json(args.json, result)
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


def _write_json(path: Path | None, result: dict[str, Any]) -> None:
    """--json: the full result, written atomically."""
    from gan.io import write_json_atomic
    from training.metrics.metrics import EvalError

    if path is None:
        return
    try:
        write_json_atomic(path, result)
    except OSError as exc:
        raise EvalError(f"cannot write {path}: {exc}") from exc
    print(f"wrote {path}")


def _is_folder_run(dataset: dict[str, Any]) -> bool:
    """A checkpoint trained on a folder of images (its record has the folder's fingerprint)."""
    return dataset.get("name") != "mnist" and "fingerprint" in dataset


def _evaluate_folder(args: argparse.Namespace, pairs: Path | None) -> int:
    """gan-eval of a folder run: training.metrics.folder_eval (needs --data-dir)."""
    from training.metrics.folder_eval import evaluate_folder_checkpoint, format_folder_report
    from training.metrics.metrics import EvalError

    if args.data_dir is None:
        raise EvalError(
            f"{args.checkpoint} was trained on a folder of images: give that folder as "
            "--data-dir to measure it against its images (or --allow-non-mnist for the MNIST "
            "classifier's metrics anyway)"
        )
    if args.method != "plain" or args.write:
        raise EvalError("a folder run's evaluation takes neither --method nor --write yet")
    result = evaluate_folder_checkpoint(
        args.checkpoint,
        args.data_dir,
        num_samples=args.num,
        seed=args.seed,
        memorisation_n=args.memorisation,
        pairs_png=pairs if args.memorisation > 0 else None,
    )
    print(format_folder_report(result))
    _write_json(args.json, result)
    return 0


def eval_cli(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_eval_parser().parse_args(argv)
    if args.train_classifier:
        return _train_classifier(args, argv)
    return _evaluate(args)


def eval_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-eval``; returns the exit status (2 for user errors)."""
    return run_command(lambda: eval_cli(argv))
