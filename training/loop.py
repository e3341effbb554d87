"""The GAN training loop: alternate "fix G, update D" and "fix D, update G".

Each iteration runs ``d_steps`` updates of D on real images against ``G(z).detach()``, then one
update of G with D's parameters frozen. An EMA copy of G is kept for sampling and export.

A run folder is self-describing::

    <out>/run.json                 the full TrainConfig and dataset description
    <out>/log.jsonl                one JSON line per logged step (losses, timing, metrics)
    <out>/samples/step-XXXXXXXX.png  grids from a fixed z (EMA generator)
    <out>/loss_curve.png           written at the end
    <out>/checkpoints/{step-XXXXXXXX,latest,best}/   see training/checkpoint.py
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from training.checkpoint import (
    CheckpointManager,
    build_config,
    load_checkpoint,
    write_json_atomic,
)
from training.data import ImageData
from training.errors import UserError
from training.images import save_grid
from training.losses import LOSSES, d_loss, g_loss, r1_penalty
from training.models import ModelConfig, build_models, to_model_range, to_uint8

log = logging.getLogger(__name__)

QUANTILE_LEVELS = 1000  # real_scores stores 1001 quantiles (levels 0, 0.001, ..., 1)


class TrainingError(UserError):
    """A training run cannot start or continue; the message says what to fix."""


@dataclass
class TrainConfig:
    """Every option of a training run (saved in run.json and in each checkpoint)."""

    steps: int = 5000
    batch_size: int = 64
    d_steps: int = 1
    loss: str = "nonsat"
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    r1_gamma: float = 0.0  # 0 disables R1; the penalty is (gamma / 2) * E||grad D(x)||^2
    r1_every: int = 4  # lazy regularisation: apply R1 every k D steps, scaled by k
    ema_decay: float = 0.999  # 0 disables EMA (export the raw G)
    ema_warmup: int = 100  # decay ramps as min(ema_decay, (1 + t) / (ema_warmup + t))
    seed: int = 0
    threads: int = 0  # 0 = leave torch's default
    channels_last: bool = True
    sample_every: int = 500
    checkpoint_every: int = 1000
    eval_every: int = 0  # 0 = evaluate only at checkpoints when an evaluator is given
    eval_samples: int = 2000
    keep_last: int = 3
    log_every: int = 50
    time_budget_s: float = 0.0  # > 0: stop after this many seconds of training (still saves)
    heldout_fraction: float = 0.05  # folder datasets: share kept out of training for real_scores
    model: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if self.loss not in LOSSES:
            raise TrainingError(f"--loss must be one of {LOSSES}, got {self.loss!r}")
        for name in ("steps", "batch_size", "d_steps", "r1_every", "log_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise TrainingError(f"ema_decay must be in [0, 1), got {self.ema_decay}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def configure_torch(threads: int) -> None:
    """CPU speed settings: thread count and flush-to-zero for denormals."""
    if threads > 0:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def with_memory_format(module: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """``module.to(memory_format=fmt)`` (torch's stubs lack that overload)."""
    return module.to(memory_format=fmt)  # type: ignore[call-overload,no-any-return]


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


@torch.no_grad()
def recalibrate_batchnorm(
    generator: nn.Module, z_dim: int, seed: int, batches: int = 8, batch_size: int = 256
) -> nn.Module:
    """Copy of ``generator`` whose BatchNorm running statistics match its own weights.

    The EMA generator's weights are an average, so the running statistics it inherited from
    the raw generator do not quite fit them; re-estimating them (cumulative average over a few
    batches from a fixed seed) makes eval-mode outputs match what the weights can do, and makes
    every image depend on its own latent only.
    """
    g = copy.deepcopy(generator)
    norms = [m for m in g.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return g.eval()
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    g.train()
    gen = torch.Generator().manual_seed(seed)
    device = next(g.parameters()).device
    for _ in range(batches):
        g(torch.randn(batch_size, z_dim, generator=gen).to(device))
    for m, mom in saved:
        m.momentum = mom
    return g.eval()


@torch.no_grad()
def generate_uint8(
    generator: nn.Module, z: torch.Tensor, batch_size: int = 500
) -> torch.Tensor:
    """Run an eval-mode generator over ``z`` in chunks; returns uint8 [N, C, H, W]."""
    out = [to_uint8(generator(z[i : i + batch_size])) for i in range(0, len(z), batch_size)]
    return torch.cat(out) if out else torch.empty(0, dtype=torch.uint8)


@torch.no_grad()
def real_score_quantiles(
    discriminator: nn.Module, images: torch.Tensor, source: str, batch_size: int = 1000
) -> dict[str, Any]:
    """D's logits on held-out real images, summarised as 1001 quantiles for percentiles."""
    was_training = discriminator.training
    discriminator.eval()
    logits = torch.cat(
        [discriminator(to_model_range(images[i : i + batch_size])) for i in range(0, len(images), batch_size)]
    )
    discriminator.train(was_training)
    levels = np.linspace(0.0, 1.0, QUANTILE_LEVELS + 1)
    q = np.quantile(logits.double().numpy(), levels)
    return {
        "levels": [round(float(x), 6) for x in levels],
        "quantiles": [float(x) for x in q],
        "num_images": len(images),
        "source": source,
        "mean_logit": float(logits.mean()),
    }


def split_heldout(data: ImageData, fraction: float, seed: int) -> tuple[ImageData, torch.Tensor]:
    """Deterministically keep ``fraction`` of a dataset (at most 2000 images) out of training."""
    n = len(data)
    k = min(2000, max(1, round(n * fraction))) if n > 1 and fraction > 0 else 0
    if k == 0:
        return data, data.images[:0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    held, keep = perm[:k], perm[k:].sort().values
    labels = data.labels[keep] if data.labels is not None else None
    info = {**data.info, "num_images": len(keep), "heldout_images": int(k)}
    return ImageData(data.images[keep], labels, info), data.images[held]


class _Batches:
    """Shuffled mini-batches from an in-memory uint8 tensor; order is part of the resume state."""

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int) -> None:
        if len(images) < batch_size:
            raise TrainingError(
                f"the dataset has {len(images)} images, fewer than --batch-size {batch_size}"
            )
        self.images = images
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(images), generator=self.gen)
        self.pos = 0
        self.epoch = 0

    def next(self) -> torch.Tensor:
        if self.pos + self.batch_size > len(self.perm):
            self.perm = torch.randperm(len(self.images), generator=self.gen)
            self.pos = 0
            self.epoch += 1
        idx = self.perm[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return self.images[idx]

    def state(self) -> dict[str, Any]:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos, "epoch": self.epoch}

    def load(self, s: dict[str, Any]) -> None:
        self.gen.set_state(s["gen"])
        self.perm, self.pos, self.epoch = s["perm"], int(s["pos"]), int(s["epoch"])


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------

Evaluator = Callable[[torch.Tensor], float]  # uint8 images -> metric (lower is better)


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data: ImageData,
        out_dir: Path,
        *,
        heldout: torch.Tensor | None = None,
        evaluator: Evaluator | None = None,
        metric_name: str = "fid_quick",
        progress: bool = True,
    ) -> None:
        configure_torch(cfg.threads)
        self.cfg = cfg
        self.mc = cfg.model
        if tuple(data.images.shape[1:]) != (self.mc.channels, self.mc.resolution, self.mc.resolution):
            raise TrainingError(
                f"dataset images are {tuple(data.images.shape[1:])} but the model expects "
                f"{(self.mc.channels, self.mc.resolution, self.mc.resolution)}"
            )
        self.data = data
        self.heldout = heldout
        self.out = Path(out_dir)
        self.evaluator = evaluator
        self.metric_name = metric_name
        self.progress = progress
        self.step = 0

        self.g, self.d = build_models(self.mc, seed=cfg.seed)
        torch.manual_seed(cfg.seed)  # everything after init draws from a known state
        if cfg.channels_last:
            self.g = with_memory_format(self.g, torch.channels_last)
            self.d = with_memory_format(self.d, torch.channels_last)
        self.g_ema = copy.deepcopy(self.g).eval() if cfg.ema_decay > 0 else None
        for p in self.g_ema.parameters() if self.g_ema is not None else []:
            p.requires_grad_(False)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=cfg.lr_g, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=cfg.lr_d, betas=betas)
        self.batches = _Batches(data.images, cfg.batch_size, cfg.seed)
        self.z_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.fixed_z = torch.randn(
            64, self.mc.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 2)
        )
        self.manager = CheckpointManager(self.out, keep_last=cfg.keep_last, lower_is_better=True)
        self.train_seconds = 0.0
        self.last_metric: float | None = None

    # ---- state for --resume -----------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "train_seconds": self.train_seconds,
            "g": self.g.state_dict(),
            "d": self.d.state_dict(),
            "g_ema": self.g_ema.state_dict() if self.g_ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "z_gen": self.z_gen.get_state(),
            "batches": self.batches.state(),
            "train_config": self.cfg.to_dict(),
        }

    def load_state(self, s: dict[str, Any]) -> None:
        self.step = int(s["step"])
        self.train_seconds = float(s.get("train_seconds", 0.0))
        self.g.load_state_dict(s["g"])
        self.d.load_state_dict(s["d"])
        if self.g_ema is not None and s.get("g_ema") is not None:
            self.g_ema.load_state_dict(s["g_ema"])
        self.opt_g.load_state_dict(s["opt_g"])
        self.opt_d.load_state_dict(s["opt_d"])
        torch.set_rng_state(s["torch_rng"])
        self.z_gen.set_state(s["z_gen"])
        self.batches.load(s["batches"])

    # ---- one iteration ----------------------------------------------------------------------

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = to_model_range(x)
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.mc.z_dim, generator=self.z_gen)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        stats: dict[str, float] = {}
        # ---- fix G, update D: maximise log D(x) + log(1 - D(G(z))) ----
        self.d.requires_grad_(True)
        for k in range(cfg.d_steps):
            real = self._prep(self.batches.next())
            with torch.no_grad():
                fake = self.g(self._z(cfg.batch_size))
            real_logits = self.d(real)
            fake_logits = self.d(fake)
            loss = d_loss(cfg.loss, real_logits, fake_logits)
            self.opt_d.zero_grad(set_to_none=True)
            d_iter = self.step * cfg.d_steps + k
            if cfg.r1_gamma > 0 and d_iter % cfg.r1_every == 0:
                r1 = r1_penalty(self.d, real)
                loss = loss + 0.5 * cfg.r1_gamma * cfg.r1_every * r1
                stats["r1"] = r1.item()
            loss.backward()
            self.opt_d.step()
            stats["d_loss"] = loss.item()
            stats["d_real"] = torch.sigmoid(real_logits.detach()).mean().item()
            stats["d_fake"] = torch.sigmoid(fake_logits.detach()).mean().item()
        # ---- fix D, update G: maximise log D(G(z)) (or the chosen variant) ----
        self.d.requires_grad_(False)
        fake = self.g(self._z(cfg.batch_size))
        loss_g = g_loss(cfg.loss, self.d(fake))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        stats["g_loss"] = loss_g.item()
        if self.g_ema is not None:
            t = self.step
            decay = min(cfg.ema_decay, (1.0 + t) / (cfg.ema_warmup + t))
            ema_update(self.g_ema, self.g, decay)
        self.step += 1
        for v in stats.values():
            if not math.isfinite(v):
                raise TrainingError(
                    f"training diverged at step {self.step} (a loss became {v}); lower the "
                    "learning rates or enable --r1-gamma"
                )
        return stats

    # ---- export, evaluation, checkpoints ----------------------------------------------------

    def export_generator(self) -> nn.Module:
        source = self.g_ema if self.g_ema is not None else self.g
        g = recalibrate_batchnorm(source, self.mc.z_dim, seed=self.cfg.seed + 3)
        return with_memory_format(g, torch.contiguous_format)

    def save_samples(self, g: nn.Module | None = None) -> Path:
        g = g if g is not None else self.export_generator()
        images = generate_uint8(g, self.fixed_z)
        path = self.out / "samples" / f"step-{self.step:08d}.png"
        save_grid(images, path, nrow=8)
        return path

    def evaluate(self, g: nn.Module) -> float | None:
        if self.evaluator is None:
            return None
        z = torch.randn(
            self.cfg.eval_samples, self.mc.z_dim, generator=torch.Generator().manual_seed(12345)
        )
        metric = float(self.evaluator(generate_uint8(g, z)))
        self.last_metric = metric
        return metric

    def save_checkpoint(self, metric: float | None = None, g: nn.Module | None = None) -> Path:
        g = g if g is not None else self.export_generator()
        d = with_memory_format(copy.deepcopy(self.d), torch.contiguous_format).eval()
        real_scores = None
        if self.heldout is not None and len(self.heldout) > 0:
            real_scores = real_score_quantiles(
                d, self.heldout, source=self.data.info.get("heldout_source", "held-out real images")
            )
        metrics: dict[str, Any] = {}
        if metric is not None:
            metrics[self.metric_name] = metric
        config = build_config(
            self.mc,
            step=self.step,
            seed=self.cfg.seed,
            dataset=self.data.info,
            training={**self.cfg.to_dict(), "train_seconds": round(self.train_seconds, 1)},
            metrics=metrics,
            real_scores=real_scores,
            extra={"training_metric": {"name": self.metric_name, "value": metric}},
        )
        return self.manager.save(self.step, g, d, config, self.state(), metric=metric)

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # ---- the main loop ----------------------------------------------------------------------

    def fit(self) -> Path:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.out / "run.json", {"train_config": cfg.to_dict(), "dataset": self.data.info}
        )
        self.g.train()
        self.d.train()
        bar = tqdm(
            total=cfg.steps, initial=self.step, disable=not self.progress, unit="it",
            dynamic_ncols=True, desc="train",
        )
        window_start, window_steps = time.perf_counter(), 0
        last_path: Path | None = None
        stopped_early = False
        while self.step < cfg.steps:
            t0 = time.perf_counter()
            stats = self.train_step()
            self.train_seconds += time.perf_counter() - t0
            window_steps += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - window_start
                its = window_steps / max(elapsed, 1e-9)
                record = {
                    "step": self.step, **{k: round(v, 5) for k, v in stats.items()},
                    "it_s": round(its, 3), "img_s": round(its * cfg.batch_size * (cfg.d_steps + 1), 1),
                    "train_seconds": round(self.train_seconds, 2),
                }
                self._log(record)
                bar.set_postfix(
                    d=f"{stats['d_loss']:.3f}", g=f"{stats['g_loss']:.3f}",
                    Dx=f"{stats['d_real']:.2f}", DGz=f"{stats['d_fake']:.2f}",
                )
                window_start, window_steps = time.perf_counter(), 0
            over_budget = cfg.time_budget_s > 0 and self.train_seconds >= cfg.time_budget_s
            is_last = self.step == cfg.steps or over_budget
            if self.step % cfg.sample_every == 0 or is_last:
                g_exp = self.export_generator()
                self.save_samples(g_exp)
            else:
                g_exp = None
            do_eval = cfg.eval_every > 0 and self.step % cfg.eval_every == 0
            if self.step % cfg.checkpoint_every == 0 or is_last or do_eval:
                g_exp = g_exp if g_exp is not None else self.export_generator()
                metric = self.evaluate(g_exp)
                if metric is not None:
                    self._log({"step": self.step, self.metric_name: round(metric, 4)})
                    bar.write(f"step {self.step}: {self.metric_name} = {metric:.3f}")
                if self.step % cfg.checkpoint_every == 0 or is_last:
                    last_path = self.save_checkpoint(metric, g_exp)
            if over_budget:
                stopped_early = True
                break
        bar.close()
        if stopped_early:
            log.info("time budget of %.0f s reached at step %d", cfg.time_budget_s, self.step)
        write_loss_curve(self.out / "log.jsonl", self.out / "loss_curve.png")
        if last_path is None:  # resumed a run that had already finished
            last_path = self.save_checkpoint(self.last_metric)
        return last_path


def write_loss_curve(log_path: Path, out_png: Path) -> None:
    """Plot D and G losses (and the quick metric, if any) from a run's log.jsonl."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, dl, gl, ms, mv = [], [], [], [], []
    if not log_path.is_file():
        return
    for line in log_path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "d_loss" in r:
            steps.append(r["step"])
            dl.append(r["d_loss"])
            gl.append(r["g_loss"])
        for k, v in r.items():
            if k.startswith("fid"):
                ms.append(r["step"])
                mv.append(v)
    if not steps:
        return
    ncols = 2 if mv else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6 * ncols, 4), squeeze=False)
    ax = axes[0][0]
    ax.plot(steps, dl, label="D loss")
    ax.plot(steps, gl, label="G loss")
    ax.set_xlabel("step")
    ax.set_title("losses")
    ax.legend()
    ax.grid(alpha=0.3)
    if mv:
        ax2 = axes[0][1]
        ax2.plot(ms, mv, marker="o")
        ax2.set_yscale("log")
        ax2.set_xlabel("step")
        ax2.set_title("FID (classifier space, quick)")
        ax2.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def resume_trainer(
    checkpoint_dir: Path,
    data: ImageData,
    out_dir: Path,
    *,
    heldout: torch.Tensor | None = None,
    evaluator: Evaluator | None = None,
    steps: int | None = None,
    time_budget_s: float | None = None,
    progress: bool = True,
) -> Trainer:
    """Rebuild a Trainer from a checkpoint's training state (optionally extending ``steps``)."""
    ckpt = load_checkpoint(checkpoint_dir, with_train_state=True)
    state = ckpt.train_state
    if not isinstance(state, dict) or "train_config" not in state:
        raise TrainingError(f"{checkpoint_dir}: training state lacks its train_config")
    cfg = TrainConfig.from_dict(state["train_config"])
    if steps is not None:
        cfg.steps = steps
    if time_budget_s is not None:
        cfg.time_budget_s = time_budget_s
    trainer = Trainer(cfg, data, out_dir, heldout=heldout, evaluator=evaluator, progress=progress)
    trainer.load_state(state)
    return trainer
