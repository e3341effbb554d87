"""``mh``: MH-GAN (Turner et al. 2019), an independence Metropolis-Hastings chain over K
proposals of G per image, moving from ``x`` to ``x'`` with probability ``min(1, exp(d(x') -
d(x)))`` (``d`` D's calibrated logit); needs a calibrated D. The chain starts at the plain
image (not at a real image, as in the paper: a service must never return training data), and
its last state is the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gan.samplers.options import MAX_PROPOSALS_BOUND, OptionSpec
from gan.samplers.registry import Sampler, register

if TYPE_CHECKING:
    import torch

    from gan.checkpoint import Calibration
    from gan.samplers.dispatch import Models
    from gan.samplers.steps import Steps


@dataclass(frozen=True)
class MHOptions:
    proposals: int = 8


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
    import torch

    from gan.samplers.results import Cost, GuidedResult, ImageStats
    from gan.samplers.seeds import method_generator, proposal_latents
    from gan.samplers.steps import DISCRIMINATOR, GENERATOR, Forward

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


def _steps(
    models: Models,
    options: MHOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    truncation: float | None,
) -> Steps:
    assert models.calibration is not None  # the dispatcher requires it
    z_dim = models.model_config.z_dim
    return mh_steps(seeds, z_dim, labels, options, models.calibration, truncation=truncation)


SAMPLER = register(
    Sampler(
        "mh",
        "MH",
        "Metropolis-Hastings: a chain over K proposals of G per image, started at the plain "
        "image and moved by D's calibrated density ratio; forward passes only.",
        MHOptions,
        (
            OptionSpec(
                "proposals",
                "integer",
                MHOptions.proposals,
                "K: images G proposes per output (the first is the plain one); cost is K times "
                "plain.",
                minimum=1,
                maximum=MAX_PROPOSALS_BOUND,
                cap="max_proposals",
            ),
        ),
        example={"proposals": 8},
        needs_calibration=True,
        steps=_steps,
        order=30,
    )
)
