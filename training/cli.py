"""Command-line entry points: ``gan-train``, ``gan-sample``, ``gan-eval`` and ``gan-calibrate``.

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


def _make_evaluator(
    kind: str, disabled: bool, data_dir: Path | None
) -> Callable[[Any], float] | None:
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
        raise TrainingError(
            f"--resume {path}: neither a checkpoint nor a run folder with checkpoints/latest"
        )
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
        print(
            f"\nsignal {signum}: stopping after this step and saving a checkpoint "
            "(again to stop at once)",
            file=sys.stderr,
        )
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
    from training.distributed import (
        DistributedTrainer,
        check_nproc,
        init_process_group,
        launch,
        main_first,
        process_env,
    )
    from training.export import export_checkpoint
    from training.loop import Interrupted, read_resume_state, resume_trainer, trainer_for

    args = build_train_parser().parse_args(argv)
    penv = process_env()  # set when torchrun started this process as one of several
    main = penv is None or penv.is_main
    logging.basicConfig(
        level=logging.INFO if main else logging.WARNING, format="%(levelname)s %(message)s"
    )
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
        run_dir = args.out or (
            src.parent.parent if src.parent.name == "checkpoints" else src.parent
        )
        saved_cfg, state = read_resume_state(src)
        cfg = config_from_options(options, base=saved_cfg)
        source = _data_source(args, state.get("data_source"))
        resume_state = (cfg, state)
    else:
        cfg = config_from_options(options)
        run_dir = args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
        source = _data_source(args, None)
    if cfg.mode != "gan" and (penv is not None or (args.nproc or 1) > 1):
        raise TrainingError(
            f"--mode {cfg.mode} trains on one process; --nproc and torchrun are for --mode gan "
            "(docs/scaling.md)"
        )
    if args.nproc is not None:
        check_nproc(args.nproc, cfg.device)
        saved_world = int(resume_state[1].get("world_size", 1)) if resume_state else args.nproc
        if saved_world != args.nproc:
            raise TrainingError(
                f"--resume: the run trained on {saved_world} process(es); resume it with "
                f"--nproc {saved_world} (its global batch and random states depend on it)"
            )
        if penv is None and args.nproc > 1:  # start the processes; each runs this again
            child_argv = list(sys.argv[1:] if argv is None else argv)
            if args.out is None:  # one run folder for all, not one per process's clock
                child_argv += ["--out", str(run_dir)]
            return launch(args.nproc, child_argv)
    trainer_class = trainer_for(cfg)
    if penv is not None:
        init_process_group(penv, cfg.device)
        trainer_class = DistributedTrainer
    with main_first(penv):  # one process downloads and caches, the others read
        data, held = load_training_data(
            source["data"],
            source["data_dir"],
            cfg.model.resolution,
            cfg.model.channels,
            download=args.download,
            cache_dir=args.cache_dir,
            limit=source["limit"],
            seed=cfg.seed,
            progress=progress and main,
        )
    saved_fingerprint = (
        resume_state[1].get("data_source", {}).get("fingerprint") if resume_state else None
    )
    if saved_fingerprint and data.info.get("fingerprint") != saved_fingerprint:
        raise TrainingError(
            f"--resume: the images in {source['data_dir']} are not the ones the run trained on "
            "(their fingerprint differs); point --data-dir at the original folder"
        )
    evaluator = _make_evaluator(source["data"], args.no_eval or not main, source["data_dir"])
    if resume_state is not None:
        trainer = resume_trainer(
            src,
            data,
            run_dir,
            heldout=held,
            evaluator=evaluator,
            progress=progress,
            resume_state=resume_state,
            trainer_class=trainer_class,
        )
        if main:
            print(f"resuming {src} at step {trainer.step} -> {trainer.cfg.steps}", file=sys.stderr)
    else:
        trainer = trainer_class(
            cfg, data, run_dir, heldout=held, evaluator=evaluator, progress=progress
        )
    trainer.data_source = {
        **source,
        "data_dir": None if source["data_dir"] is None else str(Path(source["data_dir"]).resolve()),
        "fingerprint": data.info.get("fingerprint"),
    }
    try:
        with _StopOnSignal(trainer):
            last = trainer.fit()
    except Interrupted as stop:
        if main:
            nproc = f" --nproc {penv.world_size}" if penv is not None else ""
            print(
                f"interrupted: saved {stop.checkpoint}; continue with gan-train --resume "
                f"{run_dir}{nproc}",
                file=sys.stderr,
            )
        return 128 + stop.signum
    if not main:  # the main process reports and exports
        return 0
    print(f"run folder: {run_dir}")
    print(f"latest checkpoint: {last}")
    if args.export is not None:
        best = trainer.manager.root / "best"
        src = best if (best / "config.json").is_file() else last
        export_checkpoint(src, args.export)
        print(f"exported {src} -> {args.export}")
        if not args.no_calibrate and trainer.cfg.mode == "gan":  # calibration needs G and D
            _calibrate_export(args.export, held, data.info.get("heldout_source"))
    return 0


def _calibrate_export(path: Path, held: Any, source: str | None) -> None:
    """Calibrate D on the exported checkpoint with the run's held-out reals; a failure here
    (too few held-out images, say) is a warning: the export itself is complete."""
    from training.export import calibrate_checkpoint

    try:
        entry = calibrate_checkpoint(path, held.images, held.labels, real_source=source)
    except UserError as exc:
        print(
            f"warning: {path} was exported without a calibration of D ({exc}); add one with "
            f"gan-calibrate --checkpoint {path}",
            file=sys.stderr,
        )
        return
    print(f"calibrated D on {path}: {_calibration_line(entry)}")


def _calibration_line(entry: dict[str, Any]) -> str:
    drs = entry["drs"]
    at = drs["keep_levels"].index(0.8) if 0.8 in drs["keep_levels"] else -1
    return (
        f"{entry['kind']}, ECE {entry['ece']:.4f} (uncalibrated sigmoid: "
        f"{entry['ece_uncalibrated']:.4f}) on the halves of {entry['num_real']} held-out real "
        f"and {entry['num_fake']} generated images it was not fitted on; DRS accepts "
        f"{100 * drs['acceptance'][at]:.0f}% of proposals at keep {drs['keep_levels'][at]:g}"
    )


def train_main(argv: list[str] | None = None) -> int:
    try:
        return _run(lambda: train(argv))
    finally:
        dist = sys.modules.get("training.distributed")
        if dist is not None:
            dist.shutdown()


# --------------------------------------------------------------------------------------------
# gan-sample
# --------------------------------------------------------------------------------------------


def sample(argv: list[str] | None = None) -> int:
    from gan.checkpoint import load_checkpoint
    from gan.io import save_images
    from gan.latents import SEED_LIMIT, TRUNCATION_MAX, TRUNCATION_MIN
    from gan.samplers.dispatch import Models
    from gan.samplers.dispatch import sample as guided_sample
    from gan.sampling import resolve_label

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
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        help="redraw latent components with |z| > t (0.05 .. 10)",
    )
    p.add_argument(
        "--label",
        action="append",
        default=None,
        metavar="CLASS",
        help="class-conditional models: the class (index or name) of the images; "
        "repeat it to cycle through several (image i gets the (i mod L)-th); left "
        "out: image seed s gets class s mod K, as in POST /generate",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="FILE.npy (uint8 [N,H,W] or [N,H,W,C]), FILE.png (grid) or a folder of PNGs",
    )
    add_method_arguments(p)
    args = p.parse_args(argv)
    if not 1 <= args.num <= 100_000:
        raise UserError(f"--num must be in 1..100000, got {args.num}")
    if not 0 <= args.seed < SEED_LIMIT:
        raise UserError(f"--seed must be in 0..{SEED_LIMIT - 1}, got {args.seed}")
    if args.truncation is not None and not TRUNCATION_MIN <= args.truncation <= TRUNCATION_MAX:
        raise UserError(f"--truncation must be in {TRUNCATION_MIN}..{TRUNCATION_MAX}")
    if args.out.suffix.lower() not in (".npy", ".png", ""):
        raise UserError(f"--out {args.out}: use a .npy file, a .png file, or a folder name")
    options = method_options(args)
    ck = load_checkpoint(args.checkpoint)
    labels: list[int] | None = None
    if args.label:
        given = [resolve_label(v, ck.config.classes) for v in args.label]
        labels = [given[i % len(given)] for i in range(args.num)]
    result = guided_sample(
        Models.of(ck),
        options,
        seed=args.seed,
        n=args.num,
        truncation=args.truncation,
        labels=labels,
    )
    try:
        out = save_images(result.images, args.out)
    except OSError as exc:
        raise UserError(f"cannot write {args.out}: {exc.strerror or exc}") from exc
    print(f"wrote {args.num} images from {ck.model_id} to {out}")
    if result.method != "plain" or ck.kind == "ebm":
        print(method_summary(result))
    return 0


def add_method_arguments(p: argparse._ActionsContainer) -> None:
    """--method and --method-option, shared by gan-sample and gan-eval (from the registry)."""
    from gan.samplers import METHOD_NAMES, METHODS

    def joined(names: list[str]) -> str:
        return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)

    options = "; ".join(
        f"{name}: " + (", ".join(f"{o.name}={o.default}" for o in spec.options) or "none")
        for name, spec in METHODS.items()
    )
    calibrated = joined([n for n, s in METHODS.items() if s.needs_calibration])
    gradients = joined([n for n, s in METHODS.items() if s.needs_gradients])
    p.add_argument(
        "--method",
        choices=METHOD_NAMES,
        default="plain",
        help=f"sampling method (default plain): {calibrated} need a calibrated D "
        f"(gan-calibrate); {gradients} run backward passes. See docs/d-guided.md",
    )
    p.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"an option of --method (repeat for several); defaults: {options}",
    )


def method_options(args: argparse.Namespace) -> Any:
    """The typed options of --method from --method-option (a UserError names a bad one)."""
    from gan.samplers import options_from_strings

    return options_from_strings(args.method, args.method_option)


def method_summary(result: Any) -> str:
    """One line on what a method did: acceptance, proposals, steps, D's logit, cost."""
    import statistics

    stats = result.stats
    n = max(1, len(stats))
    parts = [f"method {result.method}"]
    if result.acceptance_rate is not None:
        parts.append(f"acceptance rate {result.acceptance_rate:.3f}")
    parts.append(f"mean proposals {sum(s.proposals for s in stats) / n:.2f}")
    if any(s.steps for s in stats):
        parts.append(f"steps {stats[0].steps}")
    before = [s.logit_before for s in stats if s.logit_before is not None]
    after = [s.logit_after for s in stats if s.logit_after is not None]
    if before and after:
        parts.append(
            f"mean D logit {statistics.fmean(before):.3f} -> {statistics.fmean(after):.3f}"
        )
    cost = result.cost
    parts.append(
        f"per image: {(cost.generator_forwards + cost.discriminator_forwards) / n:.2f} forwards, "
        f"{(cost.generator_backwards + cost.discriminator_backwards) / n:.2f} backwards, "
        f"{1000 * result.seconds / n:.2f} ms"
    )
    return "; ".join(parts)


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
    ev.add_argument("--num", type=int, default=10000, help="number of samples (10000)")
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
    from gan.io import write_json_atomic
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
    options = method_options(args)
    if args.write and args.method != "plain":
        raise EvalError(
            "--write stores the model's own metrics in config.json, which describe plain "
            f"sampling; --method {args.method} measures a sampler on top (keep those with --json)"
        )
    config = read_checkpoint_config(args.checkpoint)
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
    )
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


# --------------------------------------------------------------------------------------------
# gan-calibrate
# --------------------------------------------------------------------------------------------


def build_calibrate_parser() -> argparse.ArgumentParser:
    from training.data import DATASETS
    from training.export import CALIBRATION_IMAGES, CALIBRATION_SEED

    p = argparse.ArgumentParser(
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
    from training.data import load_dataset, load_training_data
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
        recorded = config.dataset
        limit = recorded.get("limit") if isinstance(recorded.get("limit"), int) else None
        seed = config.seed if config.seed is not None else int(config.training.get("seed", 0))
        data, held = load_training_data(
            "folder",
            args.data_dir,
            mc.resolution,
            mc.channels,
            cache_dir=args.cache_dir,
            limit=limit,
            seed=seed,
            progress=progress,
        )
        want = recorded.get("fingerprint")
        if want and data.info.get("fingerprint") != want:
            raise UserError(
                f"the images in {args.data_dir} are not the ones {args.checkpoint} was trained on "
                "(their fingerprint differs), so its held-out share would hold training images; "
                "point --data-dir at the original folder"
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
    print(f"calibrated D on {args.checkpoint}: {_calibration_line(entry)}")
    print(
        f"stored under 'calibration' in {args.checkpoint}/config.json (only config.json "
        "changed: the weight files, their SHA-256 hashes and the checkpoint hash are unchanged)"
    )
    return 0


def calibrate_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-calibrate``; returns the exit status (2 for user errors)."""
    return _run(lambda: calibrate(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
