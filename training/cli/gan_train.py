"""``gan-train``: parse the options, load the data, build the trainer, run it, export.

:func:`train` is those steps, each a function here; the options themselves are in
training/cli/train_options.py and training/config.py.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.errors import UserError
from training.cli.common import calibration_line, run_command
from training.cli.train_options import (
    RESUME_OVERRIDES,
    build_train_parser,
    data_source,
    make_evaluator,
    resume_source,
)

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import ImageData
    from training.distributed import ProcessEnv
    from training.loop import Trainer


@dataclass
class RunPlan:
    """What the options say a run is: its config, folder and data, and for ``--resume`` the
    checkpoint and training state it continues from."""

    cfg: TrainConfig
    run_dir: Path
    source: dict[str, Any]
    resume_from: Path | None = None
    resume_state: tuple[TrainConfig, dict[str, Any]] | None = None
    #: The cadence options a new run under a time budget scales to it (those not given).
    auto_cadence: tuple[str, ...] = ()


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


def plan_run(args: argparse.Namespace) -> RunPlan:
    """The run's config from the options (for ``--resume``: the run's own, with only
    ``--steps`` and ``--time-budget`` changed), its folder and its data source."""
    from training.config import TrainingError, config_from_options, given_options, option_names
    from training.loop import CADENCE_TARGETS, read_resume_state

    options = given_options(args)
    if args.resume is None:
        cfg = config_from_options(options)
        return RunPlan(
            cfg=cfg,
            run_dir=args.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"),
            source=data_source(args, None),
            auto_cadence=tuple(n for n in CADENCE_TARGETS if n not in options)
            if cfg.time_budget_s > 0
            else (),
        )
    src = resume_source(args.resume)
    fixed = sorted(set(options) - set(RESUME_OVERRIDES))
    if fixed:
        raise TrainingError(
            f"--resume keeps the run's own options; {option_names(fixed)} cannot change "
            f"(only {option_names(list(RESUME_OVERRIDES))} can)"
        )
    run_dir = args.out or (src.parent.parent if src.parent.name == "checkpoints" else src.parent)
    saved_cfg, state = read_resume_state(src)
    cfg = config_from_options(options, base=saved_cfg)
    return RunPlan(cfg, run_dir, data_source(args, state.get("data_source")), src, (cfg, state))


def launch_processes(
    args: argparse.Namespace, plan: RunPlan, penv: ProcessEnv | None, argv: list[str] | None
) -> int | None:
    """For ``--nproc N`` outside torchrun: start the N processes (each runs gan-train again)
    and return torchrun's exit status; None when this process trains itself."""
    from training.config import TrainingError
    from training.distributed import check_nproc, launch

    cfg, resume_state = plan.cfg, plan.resume_state
    if cfg.mode != "gan" and (penv is not None or (args.nproc or 1) > 1):
        raise TrainingError(
            f"--mode {cfg.mode} trains on one process; --nproc and torchrun are for --mode gan "
            "(docs/scaling.md)"
        )
    if args.nproc is None:
        return None
    check_nproc(args.nproc, cfg.device)
    saved_world = int(resume_state[1].get("world_size", 1)) if resume_state else args.nproc
    if saved_world != args.nproc:
        raise TrainingError(
            f"--resume: the run trained on {saved_world} process(es); resume it with "
            f"--nproc {saved_world} (its global batch and random states depend on it)"
        )
    if penv is not None or args.nproc == 1:
        return None
    child_argv = list(sys.argv[1:] if argv is None else argv)
    if args.out is None:  # one run folder for all, not one per process's clock
        child_argv += ["--out", str(plan.run_dir)]
    return launch(args.nproc, child_argv)


def load_data(
    args: argparse.Namespace, plan: RunPlan, penv: ProcessEnv | None, progress: bool
) -> tuple[ImageData, ImageData]:
    """The training images and the held-out ones (the main process first: it downloads and
    caches); for ``--resume``, refused unless they are the images the run trained on."""
    from training.config import TrainingError
    from training.data import load_training_data
    from training.distributed import main_first

    source, cfg = plan.source, plan.cfg
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
            progress=progress,
        )
    state = plan.resume_state[1] if plan.resume_state else {}
    saved_fingerprint = state.get("data_source", {}).get("fingerprint")
    if saved_fingerprint and data.info.get("fingerprint") != saved_fingerprint:
        raise TrainingError(
            f"--resume: the images in {source['data_dir']} are not the ones the run trained on "
            "(their fingerprint differs); point --data-dir at the original folder"
        )
    return data, held


def build_trainer(
    args: argparse.Namespace,
    plan: RunPlan,
    penv: ProcessEnv | None,
    data: ImageData,
    held: ImageData,
    progress: bool,
) -> Trainer:
    """The training loop of the run (one process's, under torchrun), new or resumed."""
    from training.distributed import DistributedTrainer
    from training.loop import Trainer, resume_trainer

    main = penv is None or penv.is_main
    trainer_class = DistributedTrainer if penv is not None else Trainer
    source = plan.source
    evaluator = make_evaluator(source["data"], args.no_eval or not main, source["data_dir"], data)
    if plan.resume_from is not None:
        trainer = resume_trainer(
            plan.resume_from,
            data,
            plan.run_dir,
            heldout=held,
            evaluator=evaluator,
            progress=progress,
            resume_state=plan.resume_state,
            trainer_class=trainer_class,
        )
        if main:
            print(
                f"resuming {plan.resume_from} at step {trainer.step} -> {trainer.cfg.steps}",
                file=sys.stderr,
            )
    else:
        trainer = trainer_class(
            plan.cfg, data, plan.run_dir, heldout=held, evaluator=evaluator, progress=progress
        )
    if plan.resume_from is None:
        trainer.auto_cadence = plan.auto_cadence
    if penv is not None:  # the processes would measure different rates: keep the options' own
        trainer.auto_cadence = ()
    trainer.data_source = {
        **source,
        "data_dir": None if source["data_dir"] is None else str(Path(source["data_dir"]).resolve()),
        "fingerprint": data.info.get("fingerprint"),
    }
    return trainer


def run_training(trainer: Trainer, plan: RunPlan, penv: ProcessEnv | None) -> Path | int:
    """Train until the end (the last checkpoint) or a stop signal (the exit status, 128 + it,
    after saving a checkpoint to resume from)."""
    from training.loop import Interrupted

    try:
        with _StopOnSignal(trainer):
            return trainer.fit()
    except Interrupted as stop:
        if penv is None or penv.is_main:
            nproc = f" --nproc {penv.world_size}" if penv is not None else ""
            print(
                f"interrupted: saved {stop.checkpoint}; continue with gan-train --resume "
                f"{plan.run_dir}{nproc}",
                file=sys.stderr,
            )
        return 128 + stop.signum


def export_run(
    args: argparse.Namespace, plan: RunPlan, trainer: Trainer, last: Path, held: ImageData
) -> None:
    """Report the run; with ``--export``, copy its best (else latest) checkpoint without the
    training state and calibrate D there (kinds with G and D, unless ``--no-calibrate``)."""
    from gan.kinds import model_kind
    from training.export import export_checkpoint

    print(f"run folder: {plan.run_dir}")
    print(f"latest checkpoint: {last}")
    if args.export is None:
        return
    best = trainer.manager.root / "best"
    src = best if (best / "config.json").is_file() else last
    export_checkpoint(src, args.export)
    print(f"exported {src} -> {args.export}")
    kind = model_kind(trainer.cfg.kind)
    if not args.no_calibrate and kind.has_generator and kind.has_discriminator:
        _calibrate_export(args.export, held, trainer.data.info.get("heldout_source"))
    if args.encoder_steps > 0 and "encoder" in kind.optional:
        from training.cli.gan_encoder import add_encoder_to
        from training.encoder import EncoderOptions

        info = add_encoder_to(
            args.export, EncoderOptions(steps=args.encoder_steps, seed=trainer.cfg.seed), log=False
        )
        print(
            f"added an encoder to {args.export} ({info['steps']} steps, reconstruction MSE "
            f"{info['pixel_mse']} on fresh samples): gan-project and POST /project start from it"
        )


def train(argv: list[str] | None = None) -> int:
    """gan-train: parse -> (launch the processes) -> data -> trainer -> run -> export."""
    from training.distributed import init_process_group, process_env, shutdown

    args = build_train_parser().parse_args(argv)
    penv = process_env()  # set when torchrun started this process as one of several
    main = penv is None or penv.is_main
    logging.basicConfig(
        level=logging.INFO if main else logging.WARNING, format="%(levelname)s %(message)s"
    )
    progress = not args.no_progress
    plan = plan_run(args)
    launched = launch_processes(args, plan, penv, argv)
    if launched is not None:
        return launched
    if penv is not None:
        init_process_group(penv, plan.cfg.device)
    data, held = load_data(args, plan, penv, progress and main)
    applied = apply_folder_defaults(args, plan, data)
    if main:
        for line in data_summary(plan.cfg, plan.source, data, held, applied):
            print(line)
    trainer = build_trainer(args, plan, penv, data, held, progress)
    last = run_training(trainer, plan, penv)
    if isinstance(last, int):
        return last
    if main:  # the main process reports and exports
        export_run(args, plan, trainer, last, held)
    if penv is not None:  # every process leaves the group together once the export is written
        del trainer  # its DDP wrappers hold the group: collected before the group goes
        shutdown(wait=True)
    return 0


def apply_folder_defaults(
    args: argparse.Namespace, plan: RunPlan, data: ImageData
) -> dict[str, Any]:
    """A new run on a small image folder takes training/config.py's FOLDER_DEFAULTS for the
    options not given (``plan.cfg`` is replaced); the options changed, by field name."""
    from training.config import folder_defaults, given_options

    if plan.resume_from is not None or plan.source["data"] != "folder":
        return {}
    plan.cfg, applied = folder_defaults(plan.cfg, set(given_options(args)), len(data))
    return applied


def data_summary(
    cfg: TrainConfig,
    source: dict[str, Any],
    data: ImageData,
    held: ImageData,
    applied: dict[str, Any] | None = None,
) -> list[str]:
    """gan-train's lines on the data at start: images, size, channels, classes and their
    balance, held-out images, augmentation, the folder defaults applied; for a folder, where
    to read how long it takes."""
    where = (
        source["data"] if source["data_dir"] is None else f"{source['data']} {source['data_dir']}"
    )
    if data.labels is not None and len(data.classes) >= 2:
        import torch

        counts = torch.bincount(data.labels, minlength=len(data.classes)).tolist()
        shown = ", ".join(f"{c} {n}" for c, n in list(zip(data.classes, counts, strict=True))[:6])
        more = f", ... ({len(counts) - 6} more)" if len(counts) > 6 else ""
        classes = (
            f"{len(counts)} classes ({shown}{more}; smallest/largest "
            f"{min(counts) / max(1, max(counts)):.2f})"
            + ("" if cfg.conditional else ", unconditional")
        )
    else:
        classes = "no classes"
    lines = [
        f"data: {len(data)} training images ({where}), {cfg.model.resolution} px, "
        f"{cfg.model.channels} channel(s), {classes}; {len(held)} held out; "
        f"augment {cfg.augment}"
    ]
    if applied:
        from training.config import FOLDER_DEFAULTS_MAX_IMAGES, option_names

        given = " ".join(f"{option_names([k])} {v}" for k, v in applied.items())
        lines.append(
            f"folder defaults (under {FOLDER_DEFAULTS_MAX_IMAGES:,} images, for options not "
            f"given): {given}; measured best on small folders (docs/training.md, 'Small "
            "folders'); give an option to choose otherwise"
        )
    if source["data"] == "folder":
        lines.append(
            "a folder takes time: give a few hundred images ten minutes or more (after the "
            "first steps: a run measured here at a similar size, if there is one, and its "
            "minutes at this run's rate; docs/training.md, 'Small folders', has every figure)"
        )
    return lines


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
    print(f"calibrated D on {path}: {calibration_line(entry)}")


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``gan-train``; returns the exit status (2 for user errors)."""
    try:
        return run_command(lambda: train(argv))
    finally:
        dist = sys.modules.get("training.distributed")
        if dist is not None:
            dist.shutdown()
