"""D-guided sampling: the discriminator's judgement put to work when images are made.

D judges the whole image, so it could generate by itself: ``argmax_x D(x)``. That search is
slow and, on a GAN's D, adversarial (it finds patterns D scores highly, not digits), which is
why G is trained to do it. A trained D still knows things G has not learned, and these methods
use it to choose or move G's samples:

* ``plain``: G alone (:func:`gan.sampling.sample`'s images).
* ``drs`` (discriminator rejection sampling, Azadi et al. 2018): proposal ``k`` of an image is
  accepted with probability ``sigmoid(F)``, ``F = d - d_max - log(1 - exp(d - d_max - eps)) -
  gamma`` with ``d`` D's calibrated logit (:func:`drs_log_odds`); the first accepted proposal
  is the image. ``d_max`` and gamma (at percentile level ``keep``) come from the pilot set
  stored with the calibration. With gamma = 0 and the true ``d_max`` this is exact rejection
  sampling of the data density when D is optimal; gamma > 0 trades exactness for acceptance.
* ``mh`` (MH-GAN, Turner et al. 2019): an independence Metropolis-Hastings chain over K
  proposals, moving from ``x`` to ``x'`` with probability ``min(1, exp(d(x') - d(x)))``; the
  chain starts at the plain image (not at a real image, as in the paper: a service must never
  return training data), and its last state is the image.
* ``langevin`` (DDLS, Che et al. 2020): ``steps`` of ``z <- z - eps/2 grad E(z) + sqrt(eps)
  noise N(0, I)`` on ``E(z) = |z|^2 / 2 - d(G(z))`` with D's raw logit, then ``G(z)``.
* ``pixel_ascent``: ``steps`` of normalised gradient ascent on D's raw logit over the pixels,
  from uniform noise or from the plain image; no G. It shows why G is needed.

Model kinds (:data:`gan.models.MODEL_KINDS`): ``plain`` works on every kind. For ``gan``,
``vae`` and ``ae`` it is ``G(z)`` (an auto-encoder's decoder is stored as its G); for ``ebm``,
a checkpoint with D alone, it is :func:`ebm_search`, the bounded Langevin search on D's logit
over the pixels that the EBM was trained with (:func:`langevin_pixels`, shared with
``training/ebm.py``). The D-guided methods need G and D (``pixel_ascent`` from noise only D);
:func:`gan.methods.check_kind` refuses the others with a :class:`~gan.methods.MethodError`.

Reproducibility: image ``i`` of seed ``S`` has image seed ``s = S + i`` (:mod:`gan.latents`).
Its proposal ``k`` has the latent of seed :func:`proposal_seed` ``(s, k)``, with ``k = 0`` the
plain latent ``s`` itself (so ``plain`` is proposal 0, and ``drs`` and ``mh`` draw the same
proposals); its acceptance draws, Langevin noise and starting noise come from a
``torch.Generator`` seeded by :func:`method_generator` ``(s, method)``. Nothing depends on the
other images of a request or on how they are batched, so a seed (with its label, method and
options) always gives the same image; only the last bits of a forward pass can differ between
batch sizes, as for ``plain``.

The forward-only methods are written as *step machines* (:data:`Steps`): generators that yield
:class:`Forward` requests (run G on these latents, run D on these images) and receive the
outputs. :func:`run_steps` drives them with any two functions (here: :func:`gan.sampling.
generate` and :func:`gan.sampling.score`; the service: its batched engine, so proposals of
concurrent requests share forward passes). The gradient methods are plain functions over G and
D that run with gradients enabled (outside ``inference_mode``).

:func:`sample_method` is the one entry point (``gan-sample --method``, ``gan-eval --method``,
``bench/d_guided.py``); the service drives the same functions.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

import torch
from torch import nn

from gan.checkpoint import Calibration, Checkpoint
from gan.latents import image_seeds, seed_latent
from gan.methods import (
    DRSOptions,
    EBMSearch,
    LangevinOptions,
    MethodError,
    MethodOptions,
    MHOptions,
    PixelAscentOptions,
    PlainOptions,
    check_kind,
    method_of,
    method_spec,
    runs_gradients,
)
from gan.models import ModelConfig, to_model_range, to_uint8
from gan.sampling import DEFAULT_CHUNK, class_labels, generate, latents, score

GENERATOR: Final = "generator"
DISCRIMINATOR: Final = "discriminator"


class CalibrationMissing(MethodError):
    """A method needs a calibrated D and the checkpoint has none."""


def calibration_missing(method: str, checkpoint: str | Path | None = None) -> CalibrationMissing:
    where = f"{checkpoint} has" if checkpoint is not None else "this checkpoint has"
    return CalibrationMissing(
        f"method {method!r} needs a calibrated discriminator and {where} no calibration; add one "
        f"with `gan-calibrate --checkpoint {checkpoint or 'DIR'}` (it updates only config.json)"
    )


# --------------------------------------------------------------------------------------------
# Seeds of proposals and of each method's random draws
# --------------------------------------------------------------------------------------------


def derived_seed(seed: int, tag: str, index: int = 0) -> int:
    """A 63-bit seed derived from an image seed, a tag and an index (BLAKE2b): unrelated to any
    other image's seed, the same on every machine."""
    digest = hashlib.blake2b(f"{tag}:{int(seed)}:{int(index)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def proposal_seed(seed: int, k: int) -> int:
    """The latent seed of proposal ``k`` of image seed ``seed``; proposal 0 is ``seed`` itself."""
    return int(seed) if k == 0 else derived_seed(seed, "proposal", k)


def proposal_latents(
    pairs: Sequence[tuple[int, int]], z_dim: int, truncation: float | None = None
) -> torch.Tensor:
    """float32 ``[len(pairs), z_dim]``: the latent of proposal ``k`` of image seed ``s`` for each
    ``(s, k)`` (truncated like any seed latent)."""
    return torch.stack([seed_latent(proposal_seed(s, k), z_dim, truncation) for s, k in pairs])


def method_generator(seed: int, method: str) -> torch.Generator:
    """The CPU generator of an image's own random draws for ``method``."""
    return torch.Generator(device="cpu").manual_seed(derived_seed(seed, method))


def drs_log_odds(calibrated: torch.Tensor, d_max: float, gamma: float, eps: float) -> torch.Tensor:
    """DRS's acceptance log-odds ``F = d - d_max - log(1 - exp(d - d_max - eps)) - gamma``.

    ``d``: calibrated logits (any shape). ``d - d_max`` is capped at 0: a proposal scoring above
    the pilot set's maximum gets the largest acceptance (``sigmoid(-log(1 - exp(-eps)) -
    gamma)``, nearly 1 for gamma 0). Returned in float64.
    """
    delta = (calibrated.double() - d_max).clamp(max=0.0)
    return delta - torch.log1p(-torch.exp(delta - eps)) - gamma


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageStats:
    """What one image cost and what D made of it.

    ``proposals``: G's samples D judged for it (drs: up to and including the accepted one;
    mh: K; plain and langevin: 1; pixel_ascent: 1 from a sample, 0 from noise). ``steps``:
    gradient steps (langevin, pixel_ascent; else 0). ``accepted``: drs: a proposal was accepted
    (else the best-scoring one was returned); mh: the chain left the plain image; else None.
    ``logit_before``: D's raw logit of the plain image (or of the start), ``logit_after``: of the
    returned image, both on its uint8 pixels as ``/score`` sees them; None for ``plain``, which
    does not run D.
    """

    proposals: int
    steps: int
    accepted: bool | None
    logit_before: float | None
    logit_after: float | None


@dataclass
class Cost:
    """Images through each network, forward and backward (one image through one network
    counts 1)."""

    generator_forwards: int = 0
    discriminator_forwards: int = 0
    generator_backwards: int = 0
    discriminator_backwards: int = 0

    def __iadd__(self, other: Cost) -> Cost:
        self.generator_forwards += other.generator_forwards
        self.discriminator_forwards += other.discriminator_forwards
        self.generator_backwards += other.generator_backwards
        self.discriminator_backwards += other.discriminator_backwards
        return self

    def as_dict(self) -> dict[str, int]:
        return {
            "generator_forwards": self.generator_forwards,
            "discriminator_forwards": self.discriminator_forwards,
            "generator_backwards": self.generator_backwards,
            "discriminator_backwards": self.discriminator_backwards,
        }


@dataclass
class GuidedResult:
    """Images of one method with per-image statistics and the cost of making them.

    ``images``: uint8 ``[N, C, H, W]`` (CPU). ``latents``: float32 ``[N, z_dim]``, the latent
    each image is ``G`` of (drs, mh: the chosen proposal's; langevin: the final one); None for
    pixel_ascent, whose images are no G output. ``accepted`` / ``trials``: drs: images accepted /
    proposals tried; mh: moves accepted / moves proposed; None for the other methods.
    """

    method: str
    options: MethodOptions
    images: torch.Tensor
    latents: torch.Tensor | None
    stats: list[ImageStats]
    cost: Cost = field(default_factory=Cost)
    accepted: int | None = None
    trials: int | None = None
    seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float | None:
        if self.accepted is None or not self.trials:
            return None
        return self.accepted / self.trials

    @classmethod
    def concat(cls, parts: Sequence[GuidedResult]) -> GuidedResult:
        """The results of consecutive chunks of one request, as one."""
        if not parts:
            raise ValueError("no results to join")
        first = parts[0]
        cost = Cost()
        for part in parts:
            cost += part.cost
        lat = [p.latents for p in parts]
        acc = [p.accepted for p in parts]
        tri = [p.trials for p in parts]
        return cls(
            method=first.method,
            options=first.options,
            images=torch.cat([p.images for p in parts]) if len(parts) > 1 else first.images,
            latents=None if any(x is None for x in lat) else torch.cat(lat),  # type: ignore[arg-type]
            stats=[s for p in parts for s in p.stats],
            cost=cost,
            accepted=None if any(a is None for a in acc) else sum(a for a in acc if a is not None),
            trials=None if any(t is None for t in tri) else sum(t for t in tri if t is not None),
            seconds=sum(p.seconds for p in parts),
        )


# --------------------------------------------------------------------------------------------
# Forward-only methods as step machines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Forward:
    """A forward pass a step machine asks for: G on latents, or D on images (uint8 for the real
    networks), with one class label per row for a conditional model."""

    model: Literal["generator", "discriminator"]
    rows: torch.Tensor
    labels: torch.Tensor | None


#: A step machine: yields :class:`Forward` requests, receives their outputs, returns the result.
Steps = Generator[Forward, torch.Tensor, GuidedResult]
ForwardFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def _rows_labels(labels: torch.Tensor | None, index: list[int]) -> torch.Tensor | None:
    return None if labels is None else labels[torch.tensor(index, dtype=torch.int64)]


def plain_steps(
    seeds: Sequence[int],
    z_dim: int,
    labels: torch.Tensor | None,
    *,
    truncation: float | None = None,
) -> Steps:
    """G alone: one generator forward; D is not run."""
    z = latents(z_dim, seeds=list(seeds), truncation=truncation)
    images = yield Forward(GENERATOR, z, labels)
    n = len(seeds)
    return GuidedResult(
        "plain",
        PlainOptions(),
        images,
        z,
        [ImageStats(1, 0, None, None, None)] * n,
        Cost(generator_forwards=n),
    )


def drs_steps(
    seeds: Sequence[int],
    z_dim: int,
    labels: torch.Tensor | None,
    options: DRSOptions,
    calibration: Calibration,
    *,
    truncation: float | None = None,
) -> Steps:
    """Discriminator rejection sampling, one proposal per pending image per round.

    Each image tries its proposals 0, 1, ... in order and keeps the first accepted one
    (``u < sigmoid(F)`` with ``u`` its own uniform draws); after ``max_proposals`` without an
    acceptance it keeps the proposal with the highest ``F``. Rounds evaluate exactly the
    proposals tried, so the cost is the proposals reported.
    """
    pilot = calibration.drs
    gamma = pilot.gamma(options.keep)
    n = len(seeds)
    draws = [method_generator(s, "drs") for s in seeds]
    tried = [0] * n
    chosen: list[tuple[torch.Tensor, torch.Tensor, float] | None] = [None] * n
    best: list[tuple[float, torch.Tensor, torch.Tensor, float] | None] = [None] * n
    accepted = [False] * n
    before: list[float] = [math.nan] * n
    cost = Cost()
    pending = list(range(n))
    while pending:
        z = proposal_latents([(seeds[i], tried[i]) for i in pending], z_dim, truncation)
        y = _rows_labels(labels, pending)
        images = yield Forward(GENERATOR, z, y)
        logits = yield Forward(DISCRIMINATOR, images, y)
        cost += Cost(generator_forwards=len(pending), discriminator_forwards=len(pending))
        f = drs_log_odds(calibration.calibrated_logits(logits), pilot.d_max, gamma, pilot.eps)
        p = torch.sigmoid(f)
        still: list[int] = []
        for row, i in enumerate(pending):
            logit = float(logits[row])
            if tried[i] == 0:
                before[i] = logit
            tried[i] += 1
            fi = float(f[row])
            record = best[i]
            if record is None or fi > record[0]:
                best[i] = (fi, images[row], z[row], logit)
            u = float(torch.rand((), generator=draws[i], dtype=torch.float64))
            if u < float(p[row]):
                accepted[i] = True
                chosen[i] = (images[row], z[row], logit)
            elif tried[i] >= options.max_proposals:
                record = best[i]
                assert record is not None
                chosen[i] = (record[1], record[2], record[3])
            else:
                still.append(i)
        pending = still
    final = [c for c in chosen if c is not None]
    stats = [ImageStats(tried[i], 0, accepted[i], before[i], final[i][2]) for i in range(n)]
    return GuidedResult(
        "drs",
        options,
        torch.stack([c[0] for c in final]) if final else torch.empty(0, dtype=torch.uint8),
        torch.stack([c[1] for c in final]) if final else torch.empty(0, z_dim),
        stats,
        cost,
        accepted=sum(accepted),
        trials=sum(tried),
    )


def mh_steps(
    seeds: Sequence[int],
    z_dim: int,
    labels: torch.Tensor | None,
    options: MHOptions,
    calibration: Calibration,
    *,
    truncation: float | None = None,
) -> Steps:
    """Metropolis-Hastings independence sampler over ``proposals`` samples of G per image.

    All proposals go through G and D in one round; then each image's chain starts at proposal 0
    and moves to proposal ``k`` when ``log u < d_k - d_current`` (calibrated logits; ``u`` its own
    uniform draws), and ends at its last state.
    """
    k_total = options.proposals
    n = len(seeds)
    pairs = [(s, k) for s in seeds for k in range(k_total)]
    z = proposal_latents(pairs, z_dim, truncation)
    y = None if labels is None else labels.repeat_interleave(k_total)
    images = yield Forward(GENERATOR, z, y)
    logits = yield Forward(DISCRIMINATOR, images, y)
    d = calibration.calibrated_logits(logits).view(n, k_total)
    raw = logits.view(n, k_total)
    picked: list[int] = []
    stats: list[ImageStats] = []
    moves = 0
    for i, s in enumerate(seeds):
        draws = method_generator(s, "mh")
        current = 0
        for k in range(1, k_total):
            u = float(torch.rand((), generator=draws, dtype=torch.float64))
            if u == 0.0 or math.log(u) < float(d[i, k] - d[i, current]):
                current = k
                moves += 1
        picked.append(i * k_total + current)
        stats.append(ImageStats(k_total, 0, current != 0, float(raw[i, 0]), float(raw[i, current])))
    index = torch.tensor(picked, dtype=torch.int64)
    return GuidedResult(
        "mh",
        options,
        images[index],
        z[index],
        stats,
        Cost(generator_forwards=n * k_total, discriminator_forwards=n * k_total),
        accepted=moves if k_total > 1 else None,
        trials=n * (k_total - 1) if k_total > 1 else None,
    )


def run_steps(steps: Steps, generate_fn: ForwardFn, score_fn: ForwardFn) -> GuidedResult:
    """Drive a step machine with two synchronous forward functions."""
    try:
        request = next(steps)
        while True:
            run = generate_fn if request.model == GENERATOR else score_fn
            request = steps.send(run(request.rows, request.labels))
    except StopIteration as stop:
        result: GuidedResult = stop.value
        return result


# --------------------------------------------------------------------------------------------
# Gradient methods
# --------------------------------------------------------------------------------------------


def _device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _call(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    out: torch.Tensor = net(x) if y is None else net(x, y)
    return out


def langevin(
    generator: nn.Module,
    discriminator: nn.Module,
    seeds: Sequence[int],
    z_dim: int,
    labels: torch.Tensor | None,
    options: LangevinOptions,
    *,
    truncation: float | None = None,
) -> GuidedResult:
    """Latent Langevin dynamics on ``E(z) = |z|^2/2 - d(G(z))`` (D's raw logit), from each
    image's plain latent; the noise of step ``t`` is drawn from the image's own generator."""
    started = time.perf_counter()
    n, steps, eps = len(seeds), options.steps, options.step_size
    device = _device_of(generator)
    z0 = latents(z_dim, seeds=list(seeds), truncation=truncation)
    noise = torch.stack(
        [torch.randn(steps, z_dim, generator=method_generator(s, "langevin")) for s in seeds]
    )  # [N, steps, z_dim]
    with torch.inference_mode(False), torch.enable_grad():
        # Clones: a caller's tensors made under inference_mode cannot join autograd.
        y = None if labels is None else labels.clone().to(device)
        z = z0.clone().to(device)
        for t in range(steps):
            z = z.detach().requires_grad_(True)
            logit = _call(discriminator, _call(generator, z, y), y).float()
            energy = 0.5 * z.pow(2).sum(1) - logit
            (grad,) = torch.autograd.grad(energy.sum(), z)
            kick = noise[:, t].clone().to(device)
            z = z.detach() - 0.5 * eps * grad + math.sqrt(eps) * options.noise * kick
    z_final = z.detach().to("cpu", torch.float32)
    start_images = generate(generator, z0, labels, chunk=max(1, n))
    images = generate(generator, z_final, labels, chunk=max(1, n))
    both = score(
        discriminator, torch.cat([start_images, images]), _twice(labels), chunk=max(1, 2 * n)
    )
    stats = [ImageStats(1, steps, None, float(both[i]), float(both[n + i])) for i in range(n)]
    cost = Cost(
        generator_forwards=n * (steps + 2),
        discriminator_forwards=n * (steps + 2),
        generator_backwards=n * steps,
        discriminator_backwards=n * steps,
    )
    return GuidedResult(
        "langevin", options, images, z_final, stats, cost, seconds=time.perf_counter() - started
    )


def _twice(labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels is None else torch.cat([labels, labels])


def pixel_ascent(
    generator: nn.Module | None,
    discriminator: nn.Module,
    seeds: Sequence[int],
    model_config: ModelConfig,
    labels: torch.Tensor | None,
    options: PixelAscentOptions,
    *,
    truncation: float | None = None,
) -> GuidedResult:
    """Gradient ascent on D's raw logit over the pixels: each step moves every pixel by
    ``step_size`` times the gradient divided by its root mean square (per image), clipped to
    [-1, 1]. Starts from the image's own uniform noise, or from its plain image."""
    started = time.perf_counter()
    n = len(seeds)
    mc = model_config
    shape = (mc.channels, mc.resolution, mc.resolution)
    device = _device_of(discriminator)
    cost = Cost()
    if options.start == "sample":
        if generator is None:
            raise MethodError("pixel_ascent with start sample needs a generator", "start")
        z0 = latents(mc.z_dim, seeds=list(seeds), truncation=truncation)
        start_u8 = generate(generator, z0, labels, chunk=max(1, n))
        cost.generator_forwards += n
    else:
        start_u8 = to_uint8(
            torch.stack(
                [torch.rand(shape, generator=method_generator(s, "pixel_ascent")) for s in seeds]
            )
            .mul_(2.0)
            .sub_(1.0)
        )
    with torch.inference_mode(False), torch.enable_grad():
        y = None if labels is None else labels.clone().to(device)
        x = to_model_range(start_u8.clone()).to(device)
        for _ in range(options.steps):
            x = x.detach().requires_grad_(True)
            logit = _call(discriminator, x, y).float()
            (grad,) = torch.autograd.grad(logit.sum(), x)
            rms = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
            x = (x.detach() + options.step_size * grad / rms).clamp_(-1.0, 1.0)
    images = to_uint8(x.detach()).cpu()
    both = score(discriminator, torch.cat([start_u8, images]), _twice(labels), chunk=max(1, 2 * n))
    stats = [
        ImageStats(
            1 if options.start == "sample" else 0,
            options.steps,
            None,
            float(both[i]),
            float(both[n + i]),
        )
        for i in range(n)
    ]
    cost += Cost(
        discriminator_forwards=n * (options.steps + 2), discriminator_backwards=n * options.steps
    )
    return GuidedResult(
        "pixel_ascent", options, images, None, stats, cost, seconds=time.perf_counter() - started
    )


NoiseFn = Callable[[int], torch.Tensor]  # step t -> N(0, 1) noise of the images' shape


def langevin_pixels(
    discriminator: nn.Module,
    x: torch.Tensor,
    search: EBMSearch,
    noise_fn: NoiseFn,
    steps: int | None = None,
) -> torch.Tensor:
    """``steps`` (default ``search.steps``) Langevin steps on D's logit over the pixels:
    ``x <- clip(x + step_size * clip(grad D(x), +-grad_clip) + noise * N(0, I), -1, 1)``.

    ``x``: float ``[B, C, R, R]`` in [-1, 1] on D's device; ``noise_fn(t)`` gives step ``t``'s
    standard normal noise (CPU or D's device). Runs with gradients enabled whatever the caller's
    mode, touches no parameter's gradient, and returns the detached result. The EBM's trainer
    finds its negatives with it and :func:`ebm_search` samples with it."""
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone()
        for t in range(search.steps if steps is None else steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(discriminator(x).float().sum(), x)
            kick = noise_fn(t).to(x.device)
            step = search.step_size * grad.clamp(-search.grad_clip, search.grad_clip)
            x = (x.detach() + step + search.noise * kick).clamp_(-1.0, 1.0)
    return x.detach()


def ebm_search(
    discriminator: nn.Module,
    seeds: Sequence[int],
    model_config: ModelConfig,
    search: EBMSearch,
) -> GuidedResult:
    """An ebm checkpoint's images (its ``plain`` sampling): :func:`langevin_pixels` from each
    image's own uniform noise, with the step noise drawn from the image's own generator
    (:func:`method_generator` ``(s, "ebm")``), so an image seed always gives the same image."""
    started = time.perf_counter()
    n = len(seeds)
    mc = model_config
    shape = (mc.channels, mc.resolution, mc.resolution)
    draws = [method_generator(s, "ebm") for s in seeds]
    start = torch.stack([torch.rand(shape, generator=g) for g in draws]).mul_(2.0).sub_(1.0)

    def noise(t: int) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in draws])

    x = langevin_pixels(discriminator, start.to(_device_of(discriminator)), search, noise)
    images = to_uint8(x).cpu()
    both = score(discriminator, torch.cat([to_uint8(start), images]), chunk=max(1, 2 * n))
    stats = [
        ImageStats(0, search.steps, None, float(both[i]), float(both[n + i])) for i in range(n)
    ]
    cost = Cost(
        discriminator_forwards=n * (search.steps + 2), discriminator_backwards=n * search.steps
    )
    return GuidedResult(
        "plain", PlainOptions(), images, None, stats, cost, seconds=time.perf_counter() - started
    )


# --------------------------------------------------------------------------------------------
# The one entry point
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Models:
    """What the methods need: G and D in eval mode (either None where the kind has none), their
    config, D's calibration, the kind and, for an ebm, its Langevin search."""

    generator: nn.Module | None
    discriminator: nn.Module | None
    model_config: ModelConfig
    calibration: Calibration | None
    path: Path | None = None  # named in errors
    kind: str = "gan"
    ebm: EBMSearch | None = None

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> Models:
        return cls(
            checkpoint.generator,
            checkpoint.discriminator,
            checkpoint.model_config,
            checkpoint.config.calibration,
            checkpoint.path,
            checkpoint.kind,
            checkpoint.config.ebm,
        )

    @property
    def g(self) -> nn.Module:
        """G; :class:`MethodError` for a kind without one (check_kind refuses earlier)."""
        if self.generator is None:
            raise MethodError(f"this {self.kind} checkpoint has no generator")
        return self.generator

    @property
    def d(self) -> nn.Module:
        """D; :class:`MethodError` for a kind without one."""
        if self.discriminator is None:
            raise MethodError(f"this {self.kind} checkpoint has no discriminator")
        return self.discriminator


def require_calibration(method: str, models: Models) -> Calibration | None:
    """The calibration when ``method`` needs one; :class:`CalibrationMissing` when it is absent."""
    if not method_spec(method).needs_calibration:
        return models.calibration
    if models.calibration is None:
        raise calibration_missing(method, models.path)
    return models.calibration


def method_steps(
    models: Models,
    options: MethodOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    *,
    truncation: float | None = None,
) -> Steps:
    """The step machine of a forward-only method (plain, drs, mh; not an ebm's plain)."""
    method = method_of(options)
    check_kind(models.kind, method, options)
    if runs_gradients(models.kind, method):
        raise MethodError(
            f"method {method!r} needs gradients on a {models.kind}; it has no step machine"
        )
    z_dim = models.model_config.z_dim
    calibration = require_calibration(method, models)
    if isinstance(options, PlainOptions):
        return plain_steps(seeds, z_dim, labels, truncation=truncation)
    if isinstance(options, DRSOptions) and calibration is not None:
        return drs_steps(seeds, z_dim, labels, options, calibration, truncation=truncation)
    if isinstance(options, MHOptions) and calibration is not None:
        return mh_steps(seeds, z_dim, labels, options, calibration, truncation=truncation)
    raise MethodError(f"method {method!r} needs gradients; it has no step machine")


def run_gradient_method(
    models: Models,
    options: MethodOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    *,
    truncation: float | None = None,
) -> GuidedResult:
    """Run langevin or pixel_ascent on these images, or an ebm's plain sampling (its Langevin
    search); call it with ``inference_mode`` off."""
    check_kind(models.kind, method_of(options), options)
    if isinstance(options, PlainOptions) and models.kind == "ebm":
        return ebm_search(models.d, seeds, models.model_config, models.ebm or EBMSearch())
    if isinstance(options, LangevinOptions):
        return langevin(
            models.g,
            models.d,
            seeds,
            models.model_config.z_dim,
            labels,
            options,
            truncation=truncation,
        )
    if isinstance(options, PixelAscentOptions):
        return pixel_ascent(
            models.generator,
            models.d,
            seeds,
            models.model_config,
            labels,
            options,
            truncation=truncation,
        )
    raise MethodError(f"method {method_of(options)!r} is forward-only; use method_steps")


def sample_method(
    models: Models,
    options: MethodOptions,
    *,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    truncation: float | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> GuidedResult:
    """Images for these image seeds (and classes ``[N]`` of a conditional model) by a method.

    Works through the seeds ``chunk`` images at a time (forward passes of at most ``chunk``
    rows for plain and the gradient methods; drs and mh send each chunk's proposals through G
    and D in passes of at most ``chunk`` rows); chunking changes no image.
    """
    started = time.perf_counter()
    spec = method_spec(method_of(options))
    check_kind(models.kind, spec.name, options)
    require_calibration(spec.name, models)
    gradients = runs_gradients(models.kind, spec.name)

    def gen(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return generate(models.g, z, y, chunk=chunk)

    def disc(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return score(models.d, x, y, chunk=chunk)

    parts: list[GuidedResult] = []
    for start in range(0, len(seeds), max(1, chunk)):
        block = list(seeds[start : start + chunk])
        y = None if labels is None else labels[start : start + chunk]
        if gradients:
            parts.append(run_gradient_method(models, options, block, y, truncation=truncation))
        else:
            steps = method_steps(models, options, block, y, truncation=truncation)
            parts.append(run_steps(steps, gen, disc))
    if not parts:
        raise MethodError("no images to make: give at least one seed")
    result = GuidedResult.concat(parts)
    result.seconds = time.perf_counter() - started
    return result


def sample(
    models: Models,
    options: MethodOptions,
    *,
    seed: int,
    n: int,
    truncation: float | None = None,
    labels: Sequence[int] | int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> GuidedResult:
    """``n`` images with the image seeds ``seed .. seed + n - 1`` by a method: what
    ``gan-sample --method`` writes and ``gan-eval --method`` evaluates (classes as in
    :func:`gan.sampling.class_labels`)."""
    seeds = image_seeds(seed, n)
    y = class_labels(seeds, models.model_config.num_classes, labels)
    return sample_method(models, options, seeds=seeds, labels=y, truncation=truncation, chunk=chunk)
