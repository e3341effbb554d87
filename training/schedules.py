"""What changes during a run: the learning rate, R1/R2's gamma, Adam's beta2 and the EMA of G.

After R3GAN (Huang et al. 2025): each schedule is a cosine from its start value at step 0 to
its end value at the run's last step (``--steps``, the horizon; held at the end value past it):

    value(t) = start + (end - start) * (1 - cos(pi * t / T)) / 2,   t = step, T = steps

* ``--lr-schedule cosine``: the learning rates fall from ``--lr-g`` / ``--lr-d`` to
  ``--lr-min-ratio`` times them;
* ``--gamma-schedule cosine``: gamma falls from ``--r1-gamma`` to ``--gamma-min-ratio`` times it;
* ``--beta2-schedule cosine``: Adam's beta2 rises from ``--beta2-start`` to ``--beta2``.

The EMA of G either ramps its decay by steps, ``min(ema_decay, (1 + t) / (ema_warmup + t))``
(the default, as it always was), or, with ``--ema-kimg`` > 0, follows StyleGAN2-ADA's half-life
in images: the half-life is ``ema_kimg * 1000`` images, at most ``ema_rampup`` times the images
G has been trained on so far, and one step of ``batch`` images decays by
``0.5 ** (batch / half_life)``.

Every value is a pure function of the config and the step, so a resumed run (its config and
step are in the resume state) continues with exactly the values an uninterrupted run uses.
"""

from __future__ import annotations

import math

from training.config import SCHEDULES, TrainConfig

__all__ = [
    "SCHEDULES",
    "beta2_at",
    "cosine",
    "ema_decay_at",
    "ema_half_life_images",
    "gamma_at",
    "lr_factor",
]


def cosine(step: int, horizon: int, start: float, end: float) -> float:
    """``start`` at step 0, ``end`` at ``horizon`` and after, a half cosine between."""
    if horizon <= 0 or step >= horizon:
        return end
    return start + (end - start) * 0.5 * (1.0 - math.cos(math.pi * max(step, 0) / horizon))


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """The learning rates' multiplier at ``step`` (1.0 throughout with a constant schedule)."""
    if cfg.lr_schedule == "constant":
        return 1.0
    return cosine(step, cfg.steps, 1.0, cfg.lr_min_ratio)


def gamma_at(cfg: TrainConfig, step: int) -> float:
    """R1 (and rpgan's R2) weight at ``step``."""
    if cfg.gamma_schedule == "constant":
        return cfg.r1_gamma
    return cosine(step, cfg.steps, cfg.r1_gamma, cfg.r1_gamma * cfg.gamma_min_ratio)


def beta2_at(cfg: TrainConfig, step: int) -> float:
    """Adam's beta2 at ``step``."""
    if cfg.beta2_schedule == "constant":
        return cfg.beta2
    return cosine(step, cfg.steps, cfg.beta2_start, cfg.beta2)


def ema_half_life_images(cfg: TrainConfig, images_seen: int) -> float:
    """``--ema-kimg``'s half-life in images after G has been trained on ``images_seen``:
    ``ema_kimg * 1000``, at most ``ema_rampup * images_seen`` (no limit with rampup 0)."""
    half_life = cfg.ema_kimg * 1000.0
    if cfg.ema_rampup > 0:
        half_life = min(half_life, cfg.ema_rampup * images_seen)
    return half_life


def ema_decay_at(cfg: TrainConfig, step: int, batch: int) -> float:
    """The EMA decay of the update after G's update at ``step`` (0-based), with ``batch``
    images per step (the global batch): the half-life formula with ``--ema-kimg`` > 0, else
    ``min(ema_decay, (1 + t) / (ema_warmup + t))`` as before."""
    if cfg.ema_kimg > 0:
        half_life = ema_half_life_images(cfg, step * batch)
        return 0.5 ** (batch / half_life) if half_life > 0 else 0.0
    return min(cfg.ema_decay, (1.0 + step) / max(1, cfg.ema_warmup + step))
