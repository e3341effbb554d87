"""``langevin``: latent Langevin dynamics (DDLS, Che et al. 2020): ``steps`` of ``z <- z -
eps/2 grad E(z) + sqrt(eps) noise N(0, I)`` on ``E(z) = |z|^2 / 2 - d(G(z))`` with D's raw
logit, then ``G(z)``; needs gradients."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gan.samplers.options import MAX_STEPS_BOUND, OptionSpec
from gan.samplers.registry import Sampler, register

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gan.samplers.dispatch import Models
    from gan.samplers.results import GuidedResult


@dataclass(frozen=True)
class LangevinOptions:
    steps: int = 20
    step_size: float = 0.01
    noise: float = 1.0


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
    import torch

    from gan.samplers.results import Cost, GuidedResult, ImageStats
    from gan.samplers.seeds import method_generator
    from gan.samplers.steps import call, device_of, twice
    from gan.sampling import generate, latents, score

    started = time.perf_counter()
    n, steps, eps = len(seeds), options.steps, options.step_size
    device = device_of(generator)
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
            logit = call(discriminator, call(generator, z, y), y).float()
            energy = 0.5 * z.pow(2).sum(1) - logit
            (grad,) = torch.autograd.grad(energy.sum(), z)
            kick = noise[:, t].clone().to(device)
            z = z.detach() - 0.5 * eps * grad + math.sqrt(eps) * options.noise * kick
    z_final = z.detach().to("cpu", torch.float32)
    start_images = generate(generator, z0, labels, chunk=max(1, n))
    images = generate(generator, z_final, labels, chunk=max(1, n))
    both = score(
        discriminator, torch.cat([start_images, images]), twice(labels), chunk=max(1, 2 * n)
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


def _run(
    models: Models,
    options: LangevinOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    truncation: float | None,
) -> GuidedResult:
    z_dim = models.model_config.z_dim
    return langevin(models.g, models.d, seeds, z_dim, labels, options, truncation=truncation)


SAMPLER = register(
    Sampler(
        "langevin",
        "Langevin",
        "Latent Langevin dynamics: moves each image's latent downhill on |z|^2/2 - D(G(z)) "
        "with noise, then draws G(z); a backward pass through G and D per step.",
        LangevinOptions,
        (
            OptionSpec(
                "steps",
                "integer",
                LangevinOptions.steps,
                "Langevin steps per image.",
                minimum=1,
                maximum=MAX_STEPS_BOUND,
                cap="max_langevin_steps",
            ),
            OptionSpec(
                "step_size",
                "number",
                LangevinOptions.step_size,
                "epsilon: z <- z - epsilon/2 * grad E(z) + sqrt(epsilon) * noise * N(0, I).",
                minimum=0.0,
                maximum=1.0,
                exclusive_minimum=True,
            ),
            OptionSpec(
                "noise",
                "number",
                LangevinOptions.noise,
                "Scale of the injected noise: 1 is Langevin dynamics, 0 plain gradient descent.",
                minimum=0.0,
                maximum=2.0,
            ),
        ),
        example={"steps": 20, "step_size": 0.01, "noise": 1.0},
        needs_gradients=True,
        gradient=_run,
        order=40,
    )
)
