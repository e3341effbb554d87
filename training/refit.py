"""Refitting D after training, as discriminator rejection sampling does (Azadi et al. 2019).

DRS and MH read D's calibrated logit as the log density ratio of data over G. The logistic
(binary cross-entropy) loss is minimised by exactly that logit, but only for a D trained to
convergence against *this* G; at the end of GAN training D was chasing a moving G. The fix of
the DRS paper: keep training D with G frozen until it estimates the ratio well, then calibrate.

* :func:`refit_discriminator` trains a copy of D on training images against fresh samples of
  the frozen G (image seeds from :data:`REFIT_SEED`, classes as :func:`gan.sampling.
  class_labels` draws them), with the plain logistic loss and Adam.
* :func:`heldout_set` and :func:`heldout_bce` measure how well a D estimates the ratio: its
  logistic loss on held-out real images against fresh samples (image seeds from
  :data:`REFIT_EVAL_SEED`), equal priors, in nats (a coin scores ln 2 = 0.693).
* :func:`refit_checkpoint` does both for a checkpoint and writes a *new* checkpoint (G and
  encoder unchanged, the refit D, its real-score quantiles and its calibration, a ``refit``
  record) through :func:`gan.checkpoint.save_with_discriminator`: the source is never changed.

``gan-calibrate --refit STEPS --out DIR`` is its command line; ``bench/d_refit.py`` measures
what it buys.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan.checkpoint import load_checkpoint, save_with_discriminator
from gan.errors import UserError
from gan.latents import image_seeds
from gan.models import ModelConfig, to_model_range
from gan.sampling import class_labels, latents, score

#: Fresh samples of G that D is refit on use the image seeds REFIT_SEED, REFIT_SEED + 1, ...
#: (batch ``k`` the next ``batch`` of them): far from gan-eval's and the benchmarks' seeds
#: (0 .. a few million) and from the calibration's (3,000,000,000 ..).
REFIT_SEED = 5_000_000_000
#: The fresh samples of the held-out loss use the image seeds REFIT_EVAL_SEED ..
REFIT_EVAL_SEED = 4_000_000_000
REFIT_LR = 1e-4
REFIT_BETAS = (0.5, 0.999)
REFIT_BATCH = 64
#: How often the progress line shows the running loss.
LOG_EVERY = 50


class RefitError(UserError):
    """The refit cannot run as asked (a non-GAN checkpoint, bad options, unusable data)."""


def logistic_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The logistic loss of D with equal priors, in nats: ``(E_real softplus(-d) + E_fake
    softplus(d)) / 2``. Its minimiser is ``d(x) = log p_data(x) / p_G(x)``."""
    return 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())


def check_refit_options(steps: int, lr: float, batch: int) -> None:
    """:class:`RefitError` for options no refit can use."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise RefitError(f"--refit needs at least 1 step, got {steps!r}")
    if not math.isfinite(lr) or lr <= 0:
        raise RefitError(f"--refit-lr must be a positive number, got {lr!r}")
    if batch < 1:
        raise RefitError(f"--refit-batch must be at least 1, got {batch}")


def _labels_for(mc: ModelConfig, labels: torch.Tensor | None, what: str) -> torch.Tensor | None:
    if not mc.conditional:
        return None
    if labels is None:
        raise RefitError(
            f"this model is class-conditional: the {what} need their class labels (give the "
            "data the checkpoint was trained on)"
        )
    return labels.long()


def _check_images(mc: ModelConfig, images: torch.Tensor, what: str) -> None:
    shape = (mc.channels, mc.resolution, mc.resolution)
    if images.dim() != 4 or tuple(images.shape[1:]) != shape or images.dtype != torch.uint8:
        raise RefitError(
            f"the {what} are {images.dtype} {tuple(images.shape[1:])}, but this model makes "
            f"uint8 {shape}: give the data the checkpoint was trained on"
        )
    if images.shape[0] < 1:
        raise RefitError(f"there are no {what}")


@dataclass(frozen=True)
class HeldOutSet:
    """Held-out reals and fresh samples of G (uint8, with classes for a conditional model) on
    which :func:`heldout_bce` scores a D; fixed, so a D before and after a refit meet the same
    images."""

    reals: torch.Tensor
    real_labels: torch.Tensor | None
    fakes: torch.Tensor
    fake_labels: torch.Tensor | None


def heldout_set(
    generator: nn.Module,
    mc: ModelConfig,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    num: int,
    seed: int = REFIT_EVAL_SEED,
) -> HeldOutSet:
    """At most ``num`` held-out reals (a seeded subset) and ``num`` fresh samples of G (image
    seeds ``seed ..``)."""
    _check_images(mc, images, "held-out real images")
    y = _labels_for(mc, labels, "held-out real images")
    from training.export import reals_and_fakes

    idx, fakes, fake_labels = reals_and_fakes(generator, mc, int(images.shape[0]), num, seed)
    return HeldOutSet(images[idx], None if y is None else y[idx], fakes, fake_labels)


def heldout_bce(discriminator: nn.Module, held: HeldOutSet) -> float:
    """:func:`logistic_loss` of an eval-mode D on a :class:`HeldOutSet` (nats)."""
    was_training = discriminator.training
    discriminator.eval()
    real = score(discriminator, held.reals, held.real_labels)
    fake = score(discriminator, held.fakes, held.fake_labels)
    discriminator.train(was_training)
    return float(logistic_loss(real.double(), fake.double()))


def refit_discriminator(
    generator: nn.Module,
    discriminator: nn.Module,
    mc: ModelConfig,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    *,
    steps: int,
    lr: float = REFIT_LR,
    batch: int = REFIT_BATCH,
    seed: int = REFIT_SEED,
    progress: bool = True,
) -> nn.Module:
    """A copy of ``discriminator`` trained for ``steps`` Adam steps (``lr``, betas
    :data:`REFIT_BETAS`) on the logistic loss: each step ``batch`` training images (drawn at
    random, seeded) against ``batch`` fresh samples of the frozen G (image seeds ``seed + k *
    batch ..`` at step ``k``, as uint8 pixels like every image D judges when sampling; classes
    ``seed_i mod K``). Returned in eval mode; ``discriminator`` and G are not changed."""
    check_refit_options(steps, lr, batch)
    _check_images(mc, images, "training images")
    y_all = _labels_for(mc, labels, "training images")
    d = copy.deepcopy(discriminator).to("cpu").train().requires_grad_(True)
    generator.eval()
    opt = torch.optim.Adam(d.parameters(), lr=lr, betas=REFIT_BETAS)
    gen = torch.Generator().manual_seed(seed % 2**63)
    n = int(images.shape[0])
    from tqdm import tqdm

    bar = tqdm(range(steps), desc="refit D", disable=not progress, leave=True)
    running: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % 2**63)  # dropout, for a D that has it
        for k in bar:
            idx = torch.randint(n, (batch,), generator=gen)
            real = to_model_range(images[idx])
            real_y = None if y_all is None else y_all[idx]
            seeds = image_seeds(seed + k * batch, batch)
            fake_y = class_labels(seeds, mc.num_classes)
            z = latents(mc.z_dim, seeds=seeds)
            with torch.no_grad():
                fake_out = generator(z) if fake_y is None else generator(z, fake_y)
            # through uint8, as the samplers hand G's images to D
            fake = to_model_range(((fake_out + 1.0) * 127.5).round().clamp(0, 255).byte())
            real_logits = d(real) if real_y is None else d(real, real_y)
            fake_logits = d(fake) if fake_y is None else d(fake, fake_y)
            loss = logistic_loss(real_logits, fake_logits)
            if not torch.isfinite(loss):
                raise RefitError(
                    f"the refit diverged at step {k + 1} (loss {loss.item()}): use a lower --refit-lr"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running.append(loss.item())
            if (k + 1) % LOG_EVERY == 0 or k + 1 == steps:
                window = running[-LOG_EVERY:]
                bar.set_postfix(bce=f"{sum(window) / len(window):.4f}")
    return d.eval().requires_grad_(False)


def refit_checkpoint(
    source: str | Path,
    out: str | Path,
    train_images: torch.Tensor,
    train_labels: torch.Tensor | None,
    held_images: torch.Tensor,
    held_labels: torch.Tensor | None,
    *,
    steps: int,
    lr: float = REFIT_LR,
    batch: int = REFIT_BATCH,
    num: int,
    calibration_seed: int,
    train_source: str | None = None,
    real_source: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Refit ``source``'s D (:func:`refit_discriminator`), calibrate it, and write the new
    checkpoint at ``out`` (:func:`gan.checkpoint.save_with_discriminator`): the source's G and
    encoder, the refit D, its ``real_scores`` quantiles on the held-out images, its
    ``calibration`` (fitted as ``gan-calibrate`` fits one: ``num`` held-out reals and samples of
    G from ``calibration_seed``) and the ``refit`` record with the held-out loss (``num``
    held-out reals against ``num`` fresh samples) before and after. One atomic write: ``out``
    holds a complete, calibrated checkpoint or nothing new. Returns the written config."""
    from training.export import calibrate_models, real_score_quantiles

    check_refit_options(steps, lr, batch)
    ckpt = load_checkpoint(source)
    g, d = ckpt.generator, ckpt.discriminator
    if ckpt.kind != "gan" or g is None or d is None:
        raise RefitError(
            f"{source} is a {ckpt.kind} checkpoint: a refit trains D against samples of G and "
            "needs both; only GAN checkpoints are refit"
        )
    mc = ckpt.model_config
    started = time.time()
    held = heldout_set(g, mc, held_images, held_labels, num=num)
    before = heldout_bce(d, held)
    refit = refit_discriminator(
        g, d, mc, train_images, train_labels, steps=steps, lr=lr, batch=batch, progress=progress
    )
    after = heldout_bce(refit, held)
    seconds = time.time() - started
    calibration = calibrate_models(
        g,
        refit,
        mc,
        held_images,
        held_labels,
        num=num,
        seed=calibration_seed,
        real_source=real_source,
    )
    y_held = _labels_for(mc, held_labels, "held-out real images")
    real_scores = real_score_quantiles(
        refit, held_images, real_source or "held-out real images", labels=y_held
    )
    record: dict[str, Any] = {
        "steps": steps,
        "lr": lr,
        "batch": batch,
        "betas": list(REFIT_BETAS),
        "loss": "logistic (binary cross-entropy), equal priors",
        "source_model_id": ckpt.model_id,
        "source_checkpoint_hash": ckpt.checkpoint_hash,
        "trained_on": train_source,
        "fake_seed": REFIT_SEED,
        "heldout_bce_before": round(before, 6),
        "heldout_bce_after": round(after, 6),
        "heldout_real_images": int(held.reals.shape[0]),
        "heldout_fake_images": int(held.fakes.shape[0]),
        "heldout_fake_seed": REFIT_EVAL_SEED,
        "heldout_source": real_source,
        "seconds": round(seconds, 1),
        "refit_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return save_with_discriminator(
        source,
        out,
        refit,
        {"calibration": calibration, "real_scores": real_scores, "refit": record},
    )
