"""From training networks to servable checkpoints: the run's checkpoint folder and export.

* :func:`recalibrate_batchnorm` makes the EMA generator's BatchNorm statistics fit its weights.
* :func:`real_score_quantiles` records D's logits on held-out real images (the service's
  realness percentile).
* :class:`CheckpointManager` keeps ``<run>/checkpoints/step-*`` plus ``latest`` and ``best``.
* :func:`export_checkpoint` publishes a validated copy without the training state.
* :func:`calibrate_checkpoint` fits a calibration of D's logit (Platt scaling, or isotonic
  regression when clearly better) on held-out reals against fresh samples of G, with DRS's pilot
  statistics, and stores it in the checkpoint's config.json (``gan-calibrate``, and gan-train's
  ``--export``).

Reading and writing the files themselves is :mod:`gan.checkpoint`'s job.
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan.checkpoint import (
    CheckpointError,
    copy_checkpoint,
    is_checkpoint,
    load_checkpoint,
    read_config,
    save_checkpoint,
)
from gan.models import ModelConfig
from gan.sampling import score

QUANTILE_LEVELS = 1000  # real_scores stores 1001 quantiles (levels 0, 0.001, ..., 1)


@torch.no_grad()
def recalibrate_batchnorm(
    generator: nn.Module,
    z_dim: int,
    seed: int,
    batches: int = 8,
    batch_size: int = 256,
    num_classes: int = 0,
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
        z = torch.randn(batch_size, z_dim, generator=gen).to(device)
        if num_classes:
            g(z, torch.randint(num_classes, (batch_size,), generator=gen).to(device))
        else:
            g(z)
    for m, mom in saved:
        m.momentum = mom
    return g.eval()


def real_score_quantiles(
    discriminator: nn.Module,
    images: torch.Tensor,
    source: str,
    batch_size: int = 1000,
    labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """D's logits on held-out real images (with their true classes for a conditional D),
    summarised as 1001 quantiles for percentiles."""
    was_training = discriminator.training
    discriminator.eval()
    logits = score(discriminator, images, labels, chunk=batch_size)
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


class CheckpointManager:
    """Manages ``<run>/checkpoints/step-XXXXXXXX`` directories plus ``best`` and ``latest``.

    ``latest`` and ``best`` are full copies (not symlinks), so each is a complete checkpoint on
    its own and survives the pruning of step directories. ``best`` is the checkpoint with the
    lowest training metric (the quick FID).
    """

    def __init__(self, run_dir: Path, keep_last: int = 3) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)

    def step_dir(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def step_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if p.is_dir() and is_checkpoint(p))

    def save(
        self,
        step: int,
        generator: nn.Module | None,
        discriminator: nn.Module | None,
        config: dict[str, Any],
        train_state: Any | None,
        metric: float | None = None,
        encoder: nn.Module | None = None,
    ) -> Path:
        path = save_checkpoint(
            self.step_dir(step), generator, discriminator, config, train_state, encoder
        )
        copy_checkpoint(path, self.root / "latest")
        if metric is not None and self._is_better(metric):
            copy_checkpoint(path, self.root / "best")
        for old in self.step_dirs()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _is_better(self, metric: float) -> bool:
        best = self.root / "best"
        if not is_checkpoint(best):
            return True
        try:
            prev = read_config(best).get("training_metric", {}).get("value")
        except CheckpointError:
            return True
        return prev is None or metric < prev


def export_checkpoint(src: Path, dst: Path) -> Path:
    """Validate ``src`` and copy it to ``dst`` without its training state (servable)."""
    load_checkpoint(src)  # validate before publishing it
    return copy_checkpoint(src, dst, with_train_state=False)


# --------------------------------------------------------------------------------------------
# Calibration of D's logit, and DRS's pilot statistics
# --------------------------------------------------------------------------------------------

#: Fresh samples of G for calibration use the image seeds CALIBRATION_SEED, CALIBRATION_SEED + 1,
#: ...: far from the seeds gan-eval (0 ..), the training loop and the benchmarks use.
CALIBRATION_SEED = 3_000_000_000
#: Held-out real images used at most, and G samples drawn (the DRS pilot set), by default.
CALIBRATION_IMAGES = 10_000
MIN_CALIBRATION_IMAGES = 10
ECE_BINS = 15
#: DRS keep levels stored: gamma is the level's quantile of F over the pilot set.
KEEP_LEVELS = tuple(round(i / 100, 2) for i in range(100))  # 0.00 .. 0.99
DRS_EPS = 1e-6
#: Isotonic regression replaces Platt scaling only when it is clearly better on the validation
#: half: a lower ECE and a log-loss lower by at least this much (nats per image).
ISOTONIC_MARGIN_NLL = 0.005
_P_CLIP = 1e-6


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for any x
    return out


def platt_fit(
    logits: np.ndarray, target: np.ndarray, weight: np.ndarray, iterations: int = 100
) -> tuple[float, float]:
    """(a, b) minimising the weighted log-loss of ``sigmoid(a * logit + b)`` (Platt scaling),
    by damped Newton steps on standardised logits (a tiny ridge keeps separable data finite)."""
    mu = float(np.average(logits, weights=weight))
    sd = float(np.sqrt(np.average((logits - mu) ** 2, weights=weight))) or 1.0
    x = (logits - mu) / sd
    w = weight / weight.sum()
    ridge = 1e-6

    def loss(a: float, b: float) -> float:
        z = a * x + b
        # log(1 + e^z) - t z, stably
        return float(np.sum(w * (np.logaddexp(0.0, z) - target * z))) + 0.5 * ridge * a * a

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iterations):
        p = _sigmoid(a * x + b)
        r = w * (p - target)
        grad = np.array([np.sum(r * x) + ridge * a, np.sum(r)])
        h = w * p * (1.0 - p)
        hess = np.array([[np.sum(h * x * x) + ridge, np.sum(h * x)], [np.sum(h * x), np.sum(h)]])
        try:
            step = np.linalg.solve(hess + 1e-12 * np.eye(2), grad)
        except np.linalg.LinAlgError:
            step = grad
        scale = 1.0
        while scale > 1e-8:
            na, nb = a - scale * float(step[0]), b - scale * float(step[1])
            new = loss(na, nb)
            if new <= current:
                break
            scale *= 0.5
        else:
            break
        done = abs(current - new) < 1e-13
        a, b, current = na, nb, new
        if done:
            break
    return a / sd, b - a * mu / sd


def isotonic_fit(
    logits: np.ndarray, target: np.ndarray, weight: np.ndarray
) -> tuple[list[float], list[float]]:
    """Weighted isotonic regression of ``target`` on ``logits`` (pool adjacent violators):
    points (mean logit, probability) of its blocks, logits strictly rising."""
    order = np.argsort(logits, kind="stable")
    xs, ts, ws = logits[order], target[order], weight[order]
    blocks: list[list[float]] = []  # [sum w*t, sum w, sum w*x]
    for x, t, w in zip(xs.tolist(), ts.tolist(), ws.tolist(), strict=True):
        blocks.append([w * t, w, w * x])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            last = blocks.pop()
            for j in range(3):
                blocks[-1][j] += last[j]
    px: list[float] = []
    py: list[float] = []
    for wt, w, wx in blocks:
        x, y = wx / w, wt / w
        if px and x <= px[-1]:  # equal logits: one point
            continue
        px.append(x)
        py.append(min(max(y, 0.0), 1.0))
    return px, py


def expected_calibration_error(
    probability: np.ndarray, target: np.ndarray, weight: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Weighted ECE: ``bins`` equal-width bins of the predicted probability, each contributing
    its weight share times |mean predicted - share real|."""
    index = np.minimum((probability * bins).astype(np.int64), bins - 1)
    gap = np.bincount(index, weights=weight * (probability - target), minlength=bins)
    return float(np.abs(gap).sum() / weight.sum())


def _scores(probability: np.ndarray, target: np.ndarray, weight: np.ndarray) -> dict[str, float]:
    p = np.clip(probability, _P_CLIP, 1.0 - _P_CLIP)
    w = weight / weight.sum()
    nll = -np.sum(w * (target * np.log(p) + (1.0 - target) * np.log(1.0 - p)))
    return {
        "ece": round(expected_calibration_error(probability, target, weight), 6),
        "nll": round(float(nll), 6),
        "brier": round(float(np.sum(w * (probability - target) ** 2)), 6),
    }


def drs_pilot(calibrated_fake: np.ndarray, eps: float = DRS_EPS) -> dict[str, Any]:
    """DRS's pilot statistics over calibrated logits of G's samples: ``d_max`` and, per keep
    level, gamma (that quantile of F) and the share of proposals DRS would accept."""
    from gan.samplers.drs import drs_log_odds

    d = torch.from_numpy(np.asarray(calibrated_fake, dtype=np.float64))
    d_max = float(d.max())
    f = drs_log_odds(d, d_max, 0.0, eps).numpy()
    gammas = np.maximum.accumulate(np.quantile(f, KEEP_LEVELS))
    acceptance = [float(_sigmoid(f - g).mean()) for g in gammas]
    return {
        "d_max": d_max,
        "eps": eps,
        "keep_levels": list(KEEP_LEVELS),
        "gammas": [float(g) for g in gammas],
        "acceptance": [min(1.0, max(a, 1e-12)) for a in acceptance],
        "num_images": int(d.numel()),
    }


def fit_calibration(
    real_logits: np.ndarray,
    fake_logits: np.ndarray,
    *,
    seed: int = 0,
    real_source: str | None = None,
    fake_seed: int | None = None,
) -> dict[str, Any]:
    """The ``calibration`` entry of config.json from D's logits on held-out reals and on fresh
    samples of G.

    Each set is split in two halves (seeded); Platt scaling and isotonic regression are fitted
    on one half, with reals and fakes weighted equally (equal priors), and scored on the other
    (ECE, log-loss, Brier). A Platt fit with a higher log-loss there than D's own sigmoid is
    replaced by the identity (a = 1, b = 0). Isotonic is kept only when clearly better (lower
    ECE and a log-loss lower by ``ISOTONIC_MARGIN_NLL``). The stored ``ece`` is that of the kept calibration on the
    half it was not fitted on. DRS's pilot statistics use all fake logits, calibrated.
    """
    from gan.checkpoint import Calibration, CheckpointError

    real = np.asarray(real_logits, dtype=np.float64).ravel()
    fake = np.asarray(fake_logits, dtype=np.float64).ravel()
    for name, values in (("held-out real images", real), ("samples of G", fake)):
        if values.size < MIN_CALIBRATION_IMAGES:
            raise CheckpointError(
                f"calibration needs at least {MIN_CALIBRATION_IMAGES} {name}, got {values.size}"
            )
        if not np.isfinite(values).all():
            raise CheckpointError(
                f"D gave non-finite logits on the {name}; the checkpoint is broken"
            )
    rng = np.random.default_rng(seed)
    rp, fp = rng.permutation(real.size), rng.permutation(fake.size)
    r_fit, r_val = real[rp[: real.size // 2]], real[rp[real.size // 2 :]]
    f_fit, f_val = fake[fp[: fake.size // 2]], fake[fp[fake.size // 2 :]]

    def stack(r: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.concatenate([r, f])
        t = np.concatenate([np.ones(r.size), np.zeros(f.size)])
        w = np.concatenate([np.full(r.size, 0.5 / r.size), np.full(f.size, 0.5 / f.size)])
        return x, t, w

    x_fit, t_fit, w_fit = stack(r_fit, f_fit)
    x_val, t_val, w_val = stack(r_val, f_val)
    a, b = platt_fit(x_fit, t_fit, w_fit)
    iso_x, iso_y = isotonic_fit(x_fit, t_fit, w_fit)
    candidates = {
        "uncalibrated": _scores(_sigmoid(x_val), t_val, w_val),
        "platt": _scores(_sigmoid(a * x_val + b), t_val, w_val),
    }
    if len(iso_x) >= 2:
        candidates["isotonic"] = _scores(np.interp(x_val, iso_x, iso_y), t_val, w_val)
    if candidates["platt"]["nll"] > candidates["uncalibrated"]["nll"]:
        # The fit does not generalise to the other half (a D whose logits barely vary, say):
        # keep D's own sigmoid, Platt scaling's identity.
        a, b = 1.0, 0.0
        candidates["platt_fit"] = candidates["platt"]
        candidates["platt"] = candidates["uncalibrated"]
    iso = candidates.get("isotonic")
    platt = candidates["platt"]
    kind = "platt"
    if (
        iso is not None
        and iso["ece"] < platt["ece"]
        and iso["nll"] < platt["nll"] - ISOTONIC_MARGIN_NLL
    ):
        kind = "isotonic"
    entry: dict[str, Any] = {
        "kind": kind,
        "platt": {"a": a, "b": b},
        "ece": candidates[kind]["ece"],
        "ece_uncalibrated": candidates["uncalibrated"]["ece"],
        "ece_bins": ECE_BINS,
        "candidates": candidates,
        "validation": "Platt and isotonic fitted on half of the real and of the fake images "
        "(equal weight to each set), scored on the other half",
        "num_real": int(real.size),
        "num_fake": int(fake.size),
        "real_source": real_source,
        "fake_seed": fake_seed,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "drs": {},
    }
    if kind == "isotonic":
        entry["isotonic"] = {"logits": iso_x, "probabilities": iso_y}
    # The typed view computes calibrated logits exactly as the samplers will.
    typed = Calibration.from_config({**entry, "drs": drs_pilot(np.zeros(1))}, "calibration")
    assert typed is not None
    calibrated = typed.calibrated_logits(torch.from_numpy(fake)).numpy()
    entry["drs"] = drs_pilot(calibrated)
    return entry


def reals_and_fakes(
    generator: nn.Module,
    mc: ModelConfig,
    num_real: int,
    num: int,
    seed: int,
    chunk: int = 500,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """What D is scored on when calibrating (and by gan-calibrate --refit's held-out loss): the
    sorted indices of at most ``num`` of ``num_real`` real images (a subset seeded by ``seed``),
    and ``num`` fresh samples of G with image seeds ``seed ..`` and their classes (``seed_i mod
    K``; None for an unconditional model)."""
    from gan.latents import image_seeds
    from gan.sampling import class_labels, sample

    gen = torch.Generator().manual_seed(seed % 2**63)
    count = min(num, num_real)
    idx = torch.randperm(num_real, generator=gen)[:count].sort().values
    fakes = sample(generator, mc.z_dim, seed=seed, n=num, num_classes=mc.num_classes, chunk=chunk)
    return idx, fakes, class_labels(image_seeds(seed, num), mc.num_classes)


def calibrate_models(
    generator: nn.Module,
    discriminator: nn.Module,
    model_config: ModelConfig,
    real: torch.Tensor,
    real_labels: torch.Tensor | None,
    *,
    num: int = CALIBRATION_IMAGES,
    seed: int = CALIBRATION_SEED,
    real_source: str | None = None,
    chunk: int = 500,
) -> dict[str, Any]:
    """Score ``num`` held-out reals (at most; a seeded subset) and ``num`` fresh samples of G
    (image seeds ``seed ..``, classes ``seed_i mod K``) with D, and fit the calibration."""
    from gan.checkpoint import CheckpointError

    mc = model_config
    shape = (mc.channels, mc.resolution, mc.resolution)
    if real.dim() != 4 or tuple(real.shape[1:]) != shape or real.dtype != torch.uint8:
        raise CheckpointError(
            f"the held-out real images are {real.dtype} {tuple(real.shape[1:])}, but this "
            f"model makes uint8 {shape}: give the data the checkpoint was trained on"
        )
    if mc.conditional and real_labels is None:
        raise CheckpointError(
            "this model is class-conditional: the held-out real images need their class labels"
        )
    if num < MIN_CALIBRATION_IMAGES:
        raise CheckpointError(f"calibrate with at least {MIN_CALIBRATION_IMAGES} images, got {num}")
    idx, fakes, y_fake = reals_and_fakes(generator, mc, int(real.shape[0]), num, seed, chunk)
    y_real = None if real_labels is None or not mc.conditional else real_labels[idx].long()
    real_logits = score(discriminator, real[idx], y_real, chunk=chunk)
    fake_logits = score(discriminator, fakes, y_fake, chunk=chunk)
    return fit_calibration(
        real_logits.double().numpy(),
        fake_logits.double().numpy(),
        seed=seed % 2**32,
        real_source=real_source,
        fake_seed=seed,
    )


def calibrate_checkpoint(
    path: str | Path,
    real: torch.Tensor,
    real_labels: torch.Tensor | None,
    *,
    num: int = CALIBRATION_IMAGES,
    seed: int = CALIBRATION_SEED,
    real_source: str | None = None,
) -> dict[str, Any]:
    """Fit the calibration of a checkpoint's D and store it in its config.json, atomically (the
    old config.json stays if anything fails; the weights and their hashes never change)."""
    from gan.checkpoint import Calibration, update_config

    ckpt = load_checkpoint(path)
    if ckpt.generator is None or ckpt.discriminator is None:
        raise CheckpointError(
            f"{path} is a {ckpt.kind} checkpoint: calibration measures D's logit on samples of "
            "G and needs both; only GAN checkpoints are calibrated"
        )
    entry = calibrate_models(
        ckpt.generator,
        ckpt.discriminator,
        ckpt.model_config,
        real,
        real_labels,
        num=num,
        seed=seed,
        real_source=real_source,
    )
    Calibration.from_config(entry, str(Path(path) / "config.json"))  # never store a bad one
    update_config(path, {"calibration": entry}, replace=("calibration",))
    return entry
