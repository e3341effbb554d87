"""``pixel_ascent``: ``steps`` of normalised gradient ascent on D's raw logit over the pixels,
the literal ``argmax_x D(x)``, from uniform noise or from the plain image; no G (from noise it
needs D alone). It finds patterns D scores highly, not digits: the honest demonstration of why
G is needed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gan.kinds import Network
from gan.samplers.options import MAX_STEPS_BOUND, MethodError, OptionSpec
from gan.samplers.registry import BOTH, Sampler, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gan.models import ModelConfig
    from gan.samplers.dispatch import Models
    from gan.samplers.results import GuidedResult


@dataclass(frozen=True)
class PixelAscentOptions:
    steps: int = 50
    step_size: float = 0.02
    start: str = "noise"


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
    import torch

    from gan.models import to_model_range, to_uint8
    from gan.samplers.results import Cost, GuidedResult, ImageStats
    from gan.samplers.seeds import method_generator
    from gan.samplers.steps import call, device_of, twice
    from gan.sampling import generate, latents, score

    started = time.perf_counter()
    n = len(seeds)
    mc = model_config
    shape = (mc.channels, mc.resolution, mc.resolution)
    device = device_of(discriminator)
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
            logit = call(discriminator, x, y).float()
            (grad,) = torch.autograd.grad(logit.sum(), x)
            rms = grad.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
            x = (x.detach() + options.step_size * grad / rms).clamp_(-1.0, 1.0)
    images = to_uint8(x.detach()).cpu()
    both = score(discriminator, torch.cat([start_u8, images]), twice(labels), chunk=max(1, 2 * n))
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


def _networks(options: Any) -> tuple[Network, ...]:
    """From noise D alone; from a sample G too (``None``: the defaults, start noise)."""
    return ("discriminator",) if getattr(options, "start", "noise") == "noise" else BOTH


def _run(
    models: Models,
    options: PixelAscentOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    truncation: float | None,
) -> GuidedResult:
    return pixel_ascent(
        models.generator,
        models.d,
        seeds,
        models.model_config,
        labels,
        options,
        truncation=truncation,
    )


SAMPLER = register(
    Sampler(
        "pixel_ascent",
        "pixel ascent",
        "Gradient ascent on D's logit over the pixels themselves, without G: the literal "
        "argmax_x D(x). It finds patterns that D scores highly, not digits: why G is needed.",
        PixelAscentOptions,
        (
            OptionSpec(
                "steps",
                "integer",
                PixelAscentOptions.steps,
                "Ascent steps per image.",
                minimum=1,
                maximum=MAX_STEPS_BOUND,
                cap="max_ascent_steps",
            ),
            OptionSpec(
                "step_size",
                "number",
                PixelAscentOptions.step_size,
                "Root-mean-square change of a pixel per step, in model units (the pixel range "
                "[-1, 1] has width 2).",
                minimum=0.0,
                maximum=1.0,
                exclusive_minimum=True,
            ),
            OptionSpec(
                "start",
                "string",
                PixelAscentOptions.start,
                "noise: uniform random pixels; sample: the plain image G makes from the seed.",
                choices=("noise", "sample"),
            ),
        ),
        example={"steps": 50, "step_size": 0.02, "start": "noise"},
        needs_gradients=True,
        networks_for=_networks,
        without_generator="pixel_ascent with start noise",
        gradient=_run,
        order=50,
    )
)
