"""``gan-train``'s command line and what it names: the run's options, data and resume source."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.cli.common import CliParser

#: Options that ``--resume`` may change; every other option is the run's own.
RESUME_OVERRIDES = ("steps", "time_budget_s")


def build_train_parser() -> argparse.ArgumentParser:
    from training.config import add_config_arguments
    from training.data import DATASETS

    p = CliParser(
        prog="gan-train",
        description="Train a GAN (G and D) on MNIST or a folder of images and write checkpoints; "
        "--mode ae trains G alone (an auto-encoder) and --mode ebm D alone (an energy-based "
        "model), the lecture's other two ways to generate (docs/lecture.md).",
    )
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        choices=DATASETS,
        default=None,
        help="dataset kind (default mnist; --resume: the run's own)",
    )
    g.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="MNIST IDX folder (default $GAN_DATA_DIR or ../shared/data/mnist) or image folder",
    )
    g.add_argument(
        "--download", action="store_true", help="download MNIST if missing (verified by SHA-256)"
    )
    g.add_argument("--cache-dir", type=Path, default=None, help="where folder datasets are cached")
    g.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    add_config_arguments(p)
    g = p.add_argument_group("output")
    g.add_argument("--out", type=Path, default=None, help="run folder (default runs/<time>)")
    g.add_argument(
        "--resume",
        type=Path,
        default=None,
        help="continue from a run folder or a checkpoint with training state (its "
        "options are kept; --steps and --time-budget given here override them)",
    )
    g.add_argument(
        "--export",
        type=Path,
        default=None,
        help="also write the final (best, else latest) checkpoint here, without training state",
    )
    g.add_argument("--no-eval", action="store_true", help="skip the quick FID used to pick 'best'")
    g.add_argument(
        "--no-calibrate",
        action="store_true",
        help="do not calibrate D on the exported checkpoint (gan-calibrate can later)",
    )
    g.add_argument(
        "--encoder-steps",
        type=int,
        default=1000,
        help="train an encoder on G's samples for N steps and add it to the exported GAN "
        "checkpoint, the start of a projection (gan-project, POST /project; 0: none; "
        "gan-train-encoder can add or retrain one later)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("processes")
    g.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="train on N processes of this machine (torchrun; gloo on the CPU, one GPU "
        "each with nccl): --batch-size per process, global batch N times it. Under "
        "torchrun leave it out (docs/scaling.md)",
    )
    return p


def make_evaluator(
    kind: str, disabled: bool, data_dir: Path | None, data: Any = None
) -> Callable[[Any], float] | None:
    """The quick metric that picks ``best``: FID in the MNIST classifier's features for MNIST,
    in the fixed random CNN's (training.metrics.anyfeatures) for a folder of images."""
    if disabled:
        return None
    if kind == "folder" and data is not None and len(data) >= 2:
        from training.metrics.anyfeatures import FolderQuickFID

        return FolderQuickFID(data.images)
    if kind != "mnist":
        return None
    from training.metrics.classifier import default_classifier_dir
    from training.metrics.evaluator import Evaluator

    if not (default_classifier_dir() / "config.json").is_file():
        logging.getLogger(__name__).warning("no classifier found; 'best' falls back to latest")
        return None
    return Evaluator(data_dir=data_dir).quick_fid


def resume_source(path: Path) -> Path:
    from gan.checkpoint import is_checkpoint
    from training.config import TrainingError

    if is_checkpoint(path):
        return path
    latest = path / "checkpoints" / "latest"
    if not is_checkpoint(latest):
        raise TrainingError(
            f"--resume {path}: neither a checkpoint nor a run folder with checkpoints/latest"
        )
    return latest


def data_source(args: argparse.Namespace, saved: dict[str, Any] | None) -> dict[str, Any]:
    """--data, --data-dir and --limit: as given for a new run; for --resume, the run's own
    unless given again, and never different data."""
    from training.config import TrainingError

    given = {"data": args.data, "data_dir": args.data_dir, "limit": args.limit}
    if not saved:  # a new run, or a run saved before data sources were recorded
        return {**given, "data": args.data or infer_data_kind(args.data_dir)}
    for key in ("data", "limit"):
        if given[key] is not None and given[key] != saved.get(key):
            flag = "--" + key.replace("_", "-")
            raise TrainingError(
                f"--resume: the run trained with {flag} {saved.get(key)}; {flag} {given[key]} "
                "would change its data (start a new run for other data)"
            )
    data_dir = args.data_dir if args.data_dir is not None else saved.get("data_dir")
    return {"data": saved.get("data") or "mnist", "data_dir": data_dir, "limit": saved.get("limit")}


def infer_data_kind(data_dir: Path | None) -> str:
    """``--data`` left out: ``folder`` when ``--data-dir`` holds images and not the MNIST IDX
    files (said in one line), else ``mnist``."""
    from training.folder import scan_folder
    from training.mnist import mnist_files_present

    if data_dir is None or not data_dir.is_dir() or mnist_files_present(data_dir, "train"):
        return "mnist"
    images, _ = scan_folder(data_dir)
    if not images:
        return "mnist"
    print(
        f"--data-dir {data_dir} holds {len(images)} image file(s) and no MNIST IDX files: "
        "training on it as --data folder",
        file=sys.stderr,
    )
    return "folder"
