"""The one training loop of every model kind: :class:`Trainer`.

What an iteration does (a GAN's "fix G, update D" then "fix D, update G", an auto-encoder's
reconstruction, an EBM's Langevin negatives) is the kind's objective (training/objectives/,
found by :func:`training.objectives.objective_for`). The loop does the rest, the same for every
kind: data order, devices and precision, random generators, the EMA copy of G, logs, sample
grids, quick evaluation, checkpoints and exact resume.

A run folder is self-describing::

    <out>/run.json                 the full TrainConfig and dataset description
    <out>/log.jsonl                one JSON line per logged step (losses, timing, metrics)
    <out>/samples/step-XXXXXXXX.png  grids of the same 64 image seeds (EMA generator)
    <out>/loss_curve.png           written at the end
    <out>/checkpoints/{step-XXXXXXXX,latest,best}/   see gan/checkpoint.py
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan.checkpoint import build_config, load_checkpoint
from gan.io import save_grid, write_json_atomic
from gan.latents import image_seeds
from gan.models import ModelConfig, to_model_range
from gan.sampling import score
from training.augment import AdaptiveAugment, diff_augment, parse_policies
from training.config import TrainConfig, TrainingError
from training.data import ImageData
from training.export import CheckpointManager, real_score_quantiles
from training.losses import GANLoss
from training.objectives import objective_for
from training.objectives.base import with_memory_format
from training.plots import image_chw, write_loss_curve
from training.runtime import Batches, configure_torch, resolve_device, resolve_precision
from training.schedules import beta2_at, ema_decay_at, gamma_at, lr_factor

log = logging.getLogger(__name__)

#: Seeds of the images in every sample grid: the first 64 images of ``gan-sample --seed 0``.
SAMPLE_GRID_SEED = 0
#: Seed of the quick-FID samples (image seeds EVAL_SEED ..), the same at every evaluation.
EVAL_SEED = 12345
#: Held-out reals and samples (the first of the evaluation samples) in D's real/fake gap.
GAP_SAMPLES = 500
#: The cadence options, and how many of each a run under a time budget aims for when the user
#: left the option out (gan-train sets ``Trainer.auto_cadence``): the steps the budget holds,
#: estimated from the first steps' rate, divided by this; never sparser than the option's own
#: value.
CADENCE_TARGETS = {"log_every": 100, "sample_every": 10, "checkpoint_every": 8}
#: The first steps of a call to fit() measure the rate (it/s): this many, or fewer when they
#: take PROBE_BUDGET_FRACTION of the time budget.
PROBE_STEPS = 10
PROBE_BUDGET_FRACTION = 0.05


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


def check_finite(stats: dict[str, float], step: int, hint: str) -> dict[str, float]:
    """``stats`` unchanged if every value is finite; else a TrainingError naming the first
    value that is not, and what to change (``hint``)."""
    for name, v in stats.items():
        if not math.isfinite(v):
            raise TrainingError(f"training diverged at step {step} ({name} became {v}); {hint}")
    return stats


class Interrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint`` (resume from it)."""

    def __init__(self, signum: int, checkpoint: Path) -> None:
        super().__init__(f"stopped by signal {signum}; saved {checkpoint}")
        self.signum = signum
        self.checkpoint = checkpoint


def scaled_cadence(
    defaults: dict[str, int], auto: tuple[str, ...], expected_steps: int
) -> dict[str, int]:
    """The cadence of a run expected to take ``expected_steps`` more steps: each option in
    ``auto`` aims for CADENCE_TARGETS of its kind over them (at most its value in
    ``defaults``); the others keep their values."""
    cadence = dict(defaults)
    for name in auto:
        every = max(1, round(expected_steps / CADENCE_TARGETS[name]))
        cadence[name] = min(defaults[name], every)
    return cadence


def grid_layout(num_classes: int, n: int = 64) -> tuple[int, int]:
    """(columns, images) of a sample grid of about ``n`` images, near-square. A conditional
    model's image seed s has class s mod K, so with a multiple of K columns every column is
    one class; the rows grow with K so that the grid stays near-square (at most 3:2)."""
    side = math.isqrt(n)
    if not 2 <= num_classes <= 16:
        return side, side * (-(-n // side))
    best: tuple[float, int, int, int] | None = None
    for m in range(1, max(1, -(-side // num_classes)) + 2):
        cols = num_classes * m
        rows = max(-(-n // cols), -(-2 * cols // 3))
        aspect = max(rows / cols, cols / rows)
        key = (round(aspect, 1), cols * rows, cols, rows)
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2], best[2] * best[3]


def rate_line(rate: float, steps_left: int, budget_s: float, total_steps: int) -> str:
    """What the measured rate means: the minutes the remaining steps take, or the steps the
    time budget holds."""
    shown = f"{rate:.0f}" if rate >= 10 else f"{rate:.2g}"

    def minutes(steps: float) -> str:
        m = steps / max(rate, 1e-9) / 60
        return f"{m:.0f}" if m >= 10 else f"{m:.1g}" if m < 1 else f"{m:.1f}"

    line = f"~{shown} it/s: {steps_left} steps take ~{minutes(steps_left)} min"
    if budget_s > 0:
        fits = min(steps_left, int(rate * budget_s))
        line = (
            f"~{shown} it/s: the {budget_s:g} s time budget holds ~{fits} of the "
            f"{steps_left} steps left (all {total_steps} would take ~{minutes(total_steps)} min)"
        )
    return line + " (training steps alone; grids and checkpoints add to it)"


@dataclass(frozen=True)
class ReferenceRun:
    """A run measured on the project's 2-core CPU, for what a new run may expect."""

    resolution: int
    channels: int
    what: str
    steps: int
    result: str


#: Measured runs (docs/training.md), the default recipe; what gan-train quotes at start.
REFERENCE_RUNS = (
    ReferenceRun(
        28,
        1,
        "MNIST, 60,000 digits (the bundled model)",
        6000,
        "its best checkpoint (FID 3.10 in the MNIST classifier's space, 99 % of digits read "
        "as their class)",
    ),
    ReferenceRun(
        28,
        3,
        "Stacked MNIST, 60,000 RGB images",
        5859,
        "all 1,000 modes but smeared digits (18 % readable)",
    ),
    ReferenceRun(
        32,
        3,
        "380 synthetic discs and squares, the folder defaults (--augment diff, widths 32)",
        4062,
        "29 % cleanly drawn shapes (53 % with --conditional, which also leaves out cutout; "
        "81 % of those drawn with --truncation 0.5, less varied): recognisable, ragged edges",
    ),
)


def reference_line(resolution: int, channels: int, rate: float) -> str | None:
    """What a measured run of the nearest size reached, and how long its steps take at this
    run's ``rate``; None when none is near (resolution within 8 px, same channels)."""
    near = [
        r for r in REFERENCE_RUNS if r.channels == channels and abs(r.resolution - resolution) <= 8
    ]
    if not near or rate <= 0:
        return None
    ref = min(near, key=lambda r: abs(r.resolution - resolution))
    minutes = ref.steps / rate / 60
    shown = f"{minutes:.0f}" if minutes >= 10 else f"{minutes:.1f}"
    return (
        f"for reference, measured here: {ref.what} at {ref.resolution} px reached {ref.result} "
        f"after {ref.steps:,} steps (~{shown} min at this rate; docs/training.md)"
    )


def conditional_model(mc: ModelConfig, data: ImageData) -> ModelConfig:
    """The model config with one class per class of ``data`` (``--conditional``)."""
    if data.labels is None or len(data.classes) < 2:
        raise TrainingError(
            "--conditional needs labelled data: MNIST, or an image folder with one sub-folder "
            "per class (the ImageFolder convention: DIR/cats/*.png, DIR/dogs/*.png); this data "
            f"has {len(data.classes)} class(es) and "
            f"{'no' if data.labels is None else 'some'} labels"
        )
    return replace(mc, num_classes=len(data.classes))


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------

Evaluator = Callable[[torch.Tensor], float]  # uint8 images -> metric (lower is better)


class Trainer:
    """The training loop; ``self.objective`` is the kind's (training/objectives/)."""

    def __init__(
        self,
        cfg: TrainConfig,
        data: ImageData,
        out_dir: Path,
        *,
        heldout: ImageData | torch.Tensor | None = None,
        evaluator: Evaluator | None = None,
        metric_name: str = "fid_quick",
        progress: bool = True,
    ) -> None:
        configure_torch(cfg.threads)
        if cfg.conditional:
            cfg.model = conditional_model(cfg.model, data)
        self.cfg = cfg
        self.mc = cfg.model
        self.classes = list(data.classes) if self.mc.conditional else []
        if tuple(data.images.shape[1:]) != (
            self.mc.channels,
            self.mc.resolution,
            self.mc.resolution,
        ):
            raise TrainingError(
                f"dataset images are {tuple(data.images.shape[1:])} but the model expects "
                f"{(self.mc.channels, self.mc.resolution, self.mc.resolution)}"
            )
        self.data = data
        self.heldout = (
            heldout
            if isinstance(heldout, ImageData) or heldout is None
            else (ImageData(heldout, None))
        )
        self.out = Path(out_dir)
        self.evaluator = evaluator
        # An evaluator may name its metric (a folder run's: training.metrics.anyfeatures).
        self.metric_name = getattr(evaluator, "metric_name", metric_name)
        self.progress = progress
        self.step = 0

        self.device = resolve_device(cfg.device)
        self.autocast_dtype = resolve_precision(cfg.precision, self.device)
        self.objective = objective_for(cfg)(self)
        # G ("g") and / or D ("d"), as the kind declares them: initialised on the CPU (the same
        # weights on any device), then moved.
        self.networks: dict[str, nn.Module] = {
            name: net.to(self.device) for name, net in self.objective.build_networks().items()
        }
        torch.manual_seed(cfg.seed)  # everything after init draws from a known state
        # fp16 needs loss scaling; bf16 and fp32 do not.
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 4)
        self.ada = AdaptiveAugment() if cfg.augment == "ada" else None
        self.diff_policies = parse_policies(cfg.augment_policies)
        if cfg.channels_last:
            for name, net in self.networks.items():
                self.networks[name] = with_memory_format(net, torch.channels_last)
        # What the training step calls: the modules themselves here, their DistributedDataParallel
        # wrappers on several processes (training/distributed.py).
        self.train_networks: dict[str, nn.Module] = dict(self.networks)
        self.world_size = 1  # processes training together; the global batch is batch_size x this
        self.is_main = True  # only the main process writes the run folder
        self.g_ema = copy.deepcopy(self.g).eval() if "g" in self.networks and cfg.ema_on else None
        for p in self.g_ema.parameters() if self.g_ema is not None else []:
            p.requires_grad_(False)
        labels = data.labels if self.mc.conditional else None
        self.batches = Batches(data.images, cfg.batch_size, cfg.seed, labels)
        self.z_gen = torch.Generator().manual_seed(cfg.seed + 1)
        # Sample grids: 64 images, 8 x 8, or for a conditional model with few classes columns
        # of one class each, near-square (grid_layout).
        self.grid_columns, grid_n = grid_layout(self.mc.num_classes)
        self.grid_seeds = image_seeds(SAMPLE_GRID_SEED, grid_n)
        # The options' cadence; fit() scales those named in auto_cadence to a time budget.
        self.cadence = {name: int(getattr(cfg, name)) for name in CADENCE_TARGETS}
        self.auto_cadence: tuple[str, ...] = ()
        self.manager = CheckpointManager(self.out, keep_last=cfg.keep_last)
        self.train_seconds = 0.0
        self.last_metric: float | None = None
        self.stop_signal: int | None = None
        # Where the data came from (gan-train's --data, --data-dir, --limit): saved with the
        # training state so that --resume reads the same data; never exported.
        self.data_source: dict[str, Any] = {}
        self.tb: Any = None  # TensorBoard SummaryWriter while fit() runs with --tensorboard
        self.objective.setup()
        # The learning rates the objective set up (per optimiser, per parameter group): what
        # --lr-schedule's factor multiplies; a resumed run's optimisers then load later ones.
        self.base_lrs: dict[str, list[float]] = {
            name: [float(group["lr"]) for group in opt.param_groups]
            for name, opt in self.objective.optimisers.items()
        }

    @property
    def g(self) -> nn.Module:
        """G (an auto-encoder's decoder); kinds without one have none."""
        return self._network("g")

    @g.setter
    def g(self, module: nn.Module) -> None:
        self.networks["g"] = module

    @property
    def d(self) -> nn.Module:
        """D; kinds without one have none."""
        return self._network("d")

    @d.setter
    def d(self, module: nn.Module) -> None:
        self.networks["d"] = module

    def _network(self, name: str) -> nn.Module:
        try:
            return self.networks[name]
        except KeyError:
            raise AttributeError(f"a {self.cfg.kind} run trains no {name!r} network") from None

    # ---- state for --resume -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """The resume state: the networks (``g``, ``d``), ``g_ema`` (for kinds with G), the
        optimisers (``opt_g``, ``opt_d``), the loop's own state, then the objective's."""
        networks: dict[str, Any] = {k: net.state_dict() for k, net in self.networks.items()}
        if "g" in self.networks:
            networks["g_ema"] = self.g_ema.state_dict() if self.g_ema is not None else None
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            **networks,
            **{k: opt.state_dict() for k, opt in self.objective.optimisers.items()},
            "torch_rng": torch.get_rng_state(),
            "z_gen": self.z_gen.get_state(),
            "aug_gen": self.aug_gen.get_state(),
            **({"ada": self.ada.state_dict()} if self.ada is not None else {}),
            "batches": self.batches.state(),
            "train_config": self.cfg.to_dict(),
            "data_source": self.data_source,
            "world_size": self.world_size,
            **({"auto_cadence": list(self.auto_cadence)} if self.auto_cadence else {}),
            **self.objective.state(),
        }

    def load_state(self, s: dict[str, Any]) -> None:
        saved_world = int(s.get("world_size", 1))
        if saved_world != self.world_size:
            raise TrainingError(
                f"--resume: the run trained on {saved_world} process(es) (global batch "
                f"{self.cfg.batch_size * saved_world}) and this is {self.world_size}; resume it "
                f"on {saved_world} (gan-train --nproc {saved_world}, or torchrun --nproc-per-node "
                f"{saved_world}) so that its data order, batches and random states continue exactly"
            )
        self.step = int(s["step"])
        self.train_seconds = float(s.get("train_seconds", 0.0))
        for name, net in self.networks.items():  # older states of other kinds hold unused ones
            net.load_state_dict(s[name])
        if self.g_ema is not None and s.get("g_ema") is not None:
            self.g_ema.load_state_dict(s["g_ema"])
        for name, opt in self.objective.optimisers.items():
            opt.load_state_dict(s[name])
        torch.set_rng_state(s["torch_rng"])
        self.z_gen.set_state(s["z_gen"])
        if s.get("aug_gen") is not None:
            self.aug_gen.set_state(s["aug_gen"])
        if self.ada is not None and s.get("ada") is not None:
            self.ada.load_state_dict(s["ada"])
        self.batches.load(s["batches"])
        self.auto_cadence = tuple(str(n) for n in s.get("auto_cadence", ()))
        self.objective.load_state(s)

    # ---- one iteration ----------------------------------------------------------------------

    def prep(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 images -> model range on the training device (and memory format)."""
        x = to_model_range(x.to(self.device))
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _z(self, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents [n, z_dim] and, for a conditional model, uniformly drawn classes [n]; drawn on
        the CPU (the same numbers on every device), then moved."""
        z = torch.randn(n, self.mc.z_dim, generator=self.z_gen).to(self.device)
        if not self.mc.conditional:
            return z, None
        y = torch.randint(self.mc.num_classes, (n,), generator=self.z_gen)
        return z, y.to(self.device)

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """``--augment``'s DiffAugment or ADA (from the loop's augmentation generator), else
        ``x``."""
        if self.ada is not None:
            return self.ada(x, self.aug_gen)
        if self.cfg.augment == "diff":
            return diff_augment(x, self.aug_gen, self.diff_policies)
        return x

    def autocast(self) -> AbstractContextManager[object]:
        """``--precision``'s autocast (nothing in fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self) -> dict[str, float]:
        """The schedules' values for this step, one iteration of the objective, then the EMA
        step of G; the statistics."""
        scheduled = self.apply_schedules()
        stats = self.objective.step()
        self.update_ema()
        self.step += 1
        return check_finite({**stats, **scheduled}, self.step, self.objective.hint)

    def apply_schedules(self) -> dict[str, float]:
        """Set the learning rates, beta2 and gamma of step ``self.step`` (training/schedules.py)
        where their schedule is not constant; what was set, for the log. The optimisers'
        first learning rates (``base_lrs``) are what the factor multiplies. Nothing is touched
        with constant schedules, so such runs train exactly as before the schedules existed."""
        cfg, t = self.cfg, self.step
        values: dict[str, float] = {}
        if cfg.lr_schedule != "constant":
            factor = lr_factor(cfg, t)
            for name, opt in self.objective.optimisers.items():
                for group, base in zip(opt.param_groups, self.base_lrs[name], strict=True):
                    group["lr"] = base * factor
            values["lr_factor"] = factor
        if cfg.beta2_schedule != "constant":
            beta2 = beta2_at(cfg, t)
            for opt in self.objective.optimisers.values():
                for group in opt.param_groups:
                    group["betas"] = (group["betas"][0], beta2)
            values["beta2"] = beta2
        loss = getattr(self.objective, "loss", None)  # a GAN's (training/losses.py)
        if cfg.gamma_schedule != "constant" and isinstance(loss, GANLoss):
            loss.r1_gamma = gamma_at(cfg, t)
            values["gamma"] = loss.r1_gamma
        return values

    def update_ema(self) -> None:
        """One EMA step of G after its update at step t: decay min(ema_decay, (1 + t) /
        (ema_warmup + t)), the ramp of config.py (a constant decay with --ema-warmup 0), or with
        --ema-kimg the half-life in images (training/schedules.py), the global batch per step."""
        if self.g_ema is not None:
            batch = self.cfg.batch_size * self.world_size
            ema_update(self.g_ema, self.g, ema_decay_at(self.cfg, self.step, batch))

    # ---- export, evaluation, checkpoints ----------------------------------------------------

    def export_generator(self) -> nn.Module:
        """The objective's sampling network (G with re-estimated BatchNorm, or a frozen D)."""
        return self.objective.export()

    def save_samples(self, g: nn.Module | None = None) -> Path:
        g = g if g is not None else self.export_generator()
        images, _ = self.objective.samples(g, list(self.grid_seeds))
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        save_grid(images, path, nrow=self.grid_columns)
        return path

    def eval_images(self, g: nn.Module, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The evaluation samples: image seeds EVAL_SEED.. (classes seed mod K), as gan-sample
        draws them; uint8 images and their classes. Drawn once per evaluation, shared by the
        quick FID and D's real/fake gap."""
        return self.objective.samples(g, list(image_seeds(EVAL_SEED, n)))

    def evaluate(
        self, g: nn.Module, drawn: tuple[torch.Tensor, torch.Tensor | None] | None = None
    ) -> float | None:
        if self.evaluator is None:
            return None
        images, _ = drawn if drawn is not None else self.eval_images(g, self.cfg.eval_samples)
        metric = float(self.evaluator(images[: self.cfg.eval_samples]))
        self.last_metric = metric
        return metric

    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of a step's statistics."""
        return self.objective.progress_fields(stats)

    def save_checkpoint(self, metric: float | None = None, g: nn.Module | None = None) -> Path:
        g = g if g is not None else self.export_generator()
        d = (
            with_memory_format(copy.deepcopy(self.d), torch.contiguous_format).eval()
            if "d" in self.networks
            else None
        )
        kind_config, networks = self.objective.checkpoint_parts(g, d)
        real_scores = None
        held = self.heldout
        if (
            d is not None
            and networks.get("discriminator") is not None
            and held is not None
            and len(held) > 0
            and (held.labels is not None or not self.classes)
        ):
            real_scores = real_score_quantiles(
                d,
                held.images,
                source=self.data.info.get("heldout_source", "held-out real images"),
                labels=held.labels if self.classes else None,
            )
        metrics: dict[str, Any] = {}
        if metric is not None:
            metrics[self.metric_name] = metric
        config = build_config(
            self.mc,
            step=self.step,
            seed=self.cfg.seed,
            dataset=self.data.info,
            training={
                **self.cfg.to_dict(),
                **self.batch_record(),
                "train_seconds": round(self.train_seconds, 1),
            },
            metrics=metrics,
            real_scores=real_scores,
            classes=self.classes,
            extra={"training_metric": {"name": self.metric_name, "value": metric}},
            **kind_config,
        )
        return self.manager.save(
            self.step, config=config, train_state=self.state(), metric=metric, **networks
        )

    def batch_record(self) -> dict[str, int]:
        """Processes and global batch, for run.json and the checkpoint's training record."""
        return {
            "world_size": self.world_size,
            "global_batch_size": self.cfg.batch_size * self.world_size,
        }

    def _log(self, record: dict[str, Any]) -> None:
        if not self.is_main:
            return
        with open(self.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def _open_tensorboard(self) -> Any:
        """A SummaryWriter on <out>/tensorboard when --tensorboard is on, else None."""
        if not self.cfg.tensorboard or not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise TrainingError(
                "--tensorboard needs the tensorboard package: pip install tensorboard"
            ) from exc
        return SummaryWriter(str(self.out / "tensorboard"))

    # ---- the main loop ----------------------------------------------------------------------

    def request_stop(self, signum: int) -> None:
        """Ask the loop to stop after the current step, save a checkpoint and raise
        :class:`Interrupted` (the CLI's SIGINT / SIGTERM handler calls this)."""
        self.stop_signal = signum

    def sync_stop(self, over_budget: bool) -> bool:
        """Whether to stop for the time budget; on several processes all of them agree on it
        and on a stop signal (training/distributed.py), so that they stop at the same step."""
        return over_budget

    def d_gap(
        self, g: nn.Module, drawn: tuple[torch.Tensor, torch.Tensor | None] | None = None
    ) -> float | None:
        """Mean D logit on held-out real images minus on G's samples (EMA G, eval mode): how
        well D still tells them apart, the quality signal of runs without the MNIST classifier."""
        held = self.heldout
        if (
            "d" not in self.networks
            or held is None
            or len(held) == 0
            or (self.classes and held.labels is None)
        ):
            return None
        n = min(len(held), GAP_SAMPLES)
        fakes, fake_labels = drawn if drawn is not None else self.eval_images(g, n)
        d = self.d.eval()
        try:
            real_y = held.labels[:n] if self.classes and held.labels is not None else None
            real = score(d, held.images[:n], real_y)
            fake = score(d, fakes[:n], None if fake_labels is None else fake_labels[:n])
        finally:
            self.d.train()
        return float(real.mean() - fake.mean())

    def _evaluate_now(self, g_exp: nn.Module | None, bar: Any) -> tuple[float | None, nn.Module]:
        """The quick FID and D's real/fake gap of the exported G, logged; (metric, that G)."""
        g_exp = g_exp if g_exp is not None else self.export_generator()
        need = max(
            self.cfg.eval_samples if self.evaluator is not None else 0,
            GAP_SAMPLES if self.heldout is not None and len(self.heldout) else 0,
        )
        drawn = self.eval_images(g_exp, need) if need else None
        metric = self.evaluate(g_exp, drawn)
        gap = self.d_gap(g_exp, drawn)
        record: dict[str, Any] = {"step": self.step}
        if metric is not None:
            record[self.metric_name] = round(metric, 4)
            bar.write(f"step {self.step}: {self.metric_name} = {metric:.3f}")
        if gap is not None:
            record["d_gap"] = round(gap, 4)
        if len(record) > 1:
            self._log(record)
        write_loss_curve(self.out / "log.jsonl", self.out / "loss_curve.png")
        return metric, g_exp

    def _announce_rate(self, probe: _Probe, budget: float, auto: tuple[str, ...], bar: Any) -> None:
        """After the first steps: the measured rate and what it means for this run, and for the
        cadence options left out (``auto``), their values scaled to the steps the budget holds."""
        rate = probe.rate
        if rate is None:
            return
        steps_left = self.cfg.steps - probe.start_step
        expected = min(steps_left, round(rate * budget)) if budget > 0 else steps_left
        self.cadence = scaled_cadence(self.cadence, auto, expected)
        if not self.is_main:
            return
        lines = [rate_line(rate, steps_left, budget, self.cfg.steps)]
        reference = reference_line(self.mc.resolution, self.mc.channels, rate)
        if reference is not None:
            lines.append(reference)
        scheduled = [
            _flag_name(name)
            for name in ("lr_schedule", "gamma_schedule", "beta2_schedule")
            if getattr(self.cfg, name) != "constant"
        ]
        if scheduled and budget > 0 and expected < steps_left:
            lines.append(
                f"{', '.join(scheduled)} run to --steps {self.cfg.steps}, past what the budget "
                f"holds: give --steps {probe.start_step + expected} for them to end with it"
            )
        if auto:
            every = {name: self.cadence[name] for name in auto}
            lines.append(
                "for the budget: "
                + ", ".join(f"{_flag_name(name)} {every[name]}" for name in auto)
                + " (give them to choose)"
            )
        for line in lines:
            bar.write(line, file=sys.stderr)

    def fit(self) -> Path:
        """Train until ``steps`` (or this call's ``time_budget_s``), writing logs, grids and
        checkpoints; returns the last checkpoint. A :meth:`request_stop` stops after the current
        step with a checkpoint and raises :class:`Interrupted`."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        try:
            if self.is_main:
                self.out.mkdir(parents=True, exist_ok=True)
                write_json_atomic(
                    self.out / "run.json",
                    {
                        "train_config": cfg.to_dict(),
                        **self.batch_record(),
                        "dataset": self.data.info,
                    },
                )
        except OSError as exc:
            raise TrainingError(
                f"cannot write the run folder {self.out}: {exc.strerror or exc}; choose a "
                "writable --out"
            ) from exc
        self.tb = self._open_tensorboard()
        for net in self.networks.values():
            net.train()
        budget = cfg.time_budget_s
        started_seconds = self.train_seconds  # the budget counts this call's training only
        if budget > 0:  # the bar (and its ETA) follows the budget, not the step count
            bar = tqdm(
                total=round(budget),
                disable=not self.progress,
                unit="s",
                dynamic_ncols=True,
                desc="train (time budget)",
            )
        else:
            bar = tqdm(
                total=cfg.steps,
                initial=self.step,
                disable=not self.progress,
                unit="it",
                dynamic_ncols=True,
                desc="train",
            )
        window_start, window_steps = time.perf_counter(), 0
        last_path: Path | None = None
        stopped_early = False
        # The first steps measure the rate; the options left out scale to the budget after them.
        auto = self.auto_cadence if budget > 0 else ()
        self.cadence = {name: int(getattr(cfg, name)) for name in CADENCE_TARGETS}
        probe = _Probe(self.step, self.train_seconds)
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            stats = self.train_step()
            seconds = time.perf_counter() - t0
            self.train_seconds += seconds
            window_steps += 1
            if budget > 0:
                bar.update(min(round(self.train_seconds - started_seconds), round(budget)) - bar.n)
            else:
                bar.update(1)
            bar.set_postfix(step=self.step, **self.progress_fields(stats), refresh=False)
            probing = probe.running
            if probing and probe.done(self.step, self.train_seconds, budget, cfg.steps):
                self._announce_rate(probe, budget, auto, bar)
            log_now = self.step % self.cadence["log_every"] == 0 or self.step == cfg.steps
            if log_now or (probing and "log_every" in auto):
                elapsed = time.perf_counter() - window_start
                its = window_steps / max(elapsed, 1e-9)
                record = {
                    "step": self.step,
                    **{k: round(v, 5) for k, v in stats.items()},
                    "it_s": round(its, 3),
                    "img_s": round(its * cfg.batch_size * self.world_size * (cfg.d_steps + 1), 1),
                    "train_seconds": round(self.train_seconds, 2),
                }
                self._log(record)
                bar.set_postfix(step=self.step, **self.progress_fields(stats))
                window_start, window_steps = time.perf_counter(), 0
            over_budget = self.sync_stop(
                budget > 0 and self.train_seconds - started_seconds >= budget
            )
            interrupted = self.stop_signal is not None
            is_last = self.step == cfg.steps or over_budget or interrupted
            if self.is_main and (self.step % self.cadence["sample_every"] == 0 or is_last):
                g_exp = self.export_generator()
                grid_path = self.save_samples(g_exp)
                if self.tb is not None:
                    self.tb.add_image("samples", image_chw(grid_path), self.step)
            else:
                g_exp = None
            do_eval = cfg.eval_every > 0 and self.step % cfg.eval_every == 0
            do_checkpoint = self.step % self.cadence["checkpoint_every"] == 0 or is_last
            if do_checkpoint or do_eval:
                metric, g_exp = self._evaluate_now(g_exp, bar) if self.is_main else (None, None)
                if do_checkpoint:
                    last_path = self.save_checkpoint(metric, g_exp)
            if over_budget or interrupted:
                stopped_early = True
                break
        bar.close()
        if self.tb is not None:
            self.tb.close()
        if stopped_early and self.stop_signal is None:
            log.info("time budget of %.0f s reached at step %d", budget, self.step)
        if self.is_main:
            write_loss_curve(self.out / "log.jsonl", self.out / "loss_curve.png")
        if last_path is None:  # resumed a run that had already finished
            last_path = self.save_checkpoint(self.last_metric)
        if self.stop_signal is not None:
            raise Interrupted(self.stop_signal, last_path)
        return last_path


def _flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


class _Probe:
    """The first steps of a call to fit(): their rate (it/s), the first step (warm-up) left
    out."""

    def __init__(self, start_step: int, start_seconds: float) -> None:
        self.start_step = start_step
        self.start_seconds = start_seconds
        self.first: tuple[int, float] | None = None  # (step, train seconds) after the first step
        self.running = True
        self.rate: float | None = None

    def done(self, step: int, seconds: float, budget: float, total_steps: int) -> bool:
        """Whether the probe ends at this step (its rate is then set when measurable)."""
        if self.first is None:
            self.first = (step, seconds)
        steps = step - self.start_step
        spent = seconds - self.start_seconds
        enough = steps >= PROBE_STEPS or (
            budget > 0 and steps >= 2 and spent >= PROBE_BUDGET_FRACTION * budget
        )
        if not (enough or step >= total_steps):
            return False
        self.running = False
        n, t = step - self.first[0], seconds - self.first[1]
        if n > 0 and t > 0:
            self.rate = n / t
        return True


def read_resume_state(checkpoint_dir: Path) -> tuple[TrainConfig, dict[str, Any]]:
    """A checkpoint's training state and the TrainConfig it was saved with (validated once)."""
    state = load_checkpoint(checkpoint_dir, with_train_state=True).train_state
    if not isinstance(state, dict) or "train_config" not in state:
        raise TrainingError(f"{checkpoint_dir}: training state lacks its train_config")
    return TrainConfig.from_dict(state["train_config"]), state


def resume_trainer(
    checkpoint_dir: Path,
    data: ImageData,
    out_dir: Path,
    *,
    heldout: ImageData | torch.Tensor | None = None,
    evaluator: Evaluator | None = None,
    steps: int | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
    resume_state: tuple[TrainConfig, dict[str, Any]] | None = None,
    trainer_class: type[Trainer] | None = None,
) -> Trainer:
    """Rebuild a Trainer from a checkpoint's training state (optionally extending ``steps``).

    ``resume_state`` is :func:`read_resume_state`'s result when the caller already read it;
    ``trainer_class`` a Trainer subclass to build (the distributed one); the run's objective
    comes from its config either way.
    """
    cfg, state = resume_state if resume_state is not None else read_resume_state(checkpoint_dir)
    if steps is not None:
        cfg.steps = steps
    if time_budget_s is not None:
        cfg.time_budget_s = time_budget_s
    cls = trainer_class or Trainer
    trainer = cls(cfg, data, out_dir, heldout=heldout, evaluator=evaluator, progress=progress)
    trainer.load_state(state)
    return trainer


def trainer_for(cfg: TrainConfig) -> type[Trainer]:
    """The trainer class of ``cfg``: :class:`Trainer` for every kind (its objective comes from
    ``cfg.kind``); kept for callers written when each kind had its own class."""
    return Trainer
