"""``drs``: discriminator rejection sampling (Azadi et al. 2018); needs a calibrated D.

Proposal ``k`` of an image is accepted with probability ``sigmoid(F)``, ``F = d - d_max -
log(1 - exp(d - d_max - eps)) - gamma`` with ``d`` D's calibrated logit (:func:`drs_log_odds`);
the first accepted proposal is the image. ``d_max`` and gamma (at percentile level ``keep``)
come from the pilot set stored with the calibration. With gamma = 0 and the true ``d_max`` this
is exact rejection sampling of the data density when D is optimal; gamma > 0 trades exactness
for acceptance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gan.samplers.options import MAX_PROPOSALS_BOUND, MethodError, OptionSpec
from gan.samplers.registry import Sampler, register

if TYPE_CHECKING:
    import torch

    from gan.checkpoint import Calibration
    from gan.samplers.dispatch import Models
    from gan.samplers.steps import Steps


@dataclass(frozen=True)
class DRSOptions:
    keep: float = 0.8
    max_proposals: int = 32


def drs_log_odds(calibrated: torch.Tensor, d_max: float, gamma: float, eps: float) -> torch.Tensor:
    """DRS's acceptance log-odds ``F = d - d_max - log(1 - exp(d - d_max - eps)) - gamma``.

    ``d``: calibrated logits (any shape). ``d - d_max`` is capped at 0: a proposal scoring above
    the pilot set's maximum gets the largest acceptance (``sigmoid(-log(1 - exp(-eps)) -
    gamma)``, nearly 1 for gamma 0). Returned in float64.
    """
    import torch

    delta = (calibrated.double() - d_max).clamp(max=0.0)
    return delta - torch.log1p(-torch.exp(delta - eps)) - gamma


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
    import torch

    from gan.samplers.results import Cost, GuidedResult, ImageStats
    from gan.samplers.seeds import method_generator, proposal_latents
    from gan.samplers.steps import DISCRIMINATOR, GENERATOR, Forward, rows_labels

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
        y = rows_labels(labels, pending)
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


def _steps(
    models: Models,
    options: DRSOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    truncation: float | None,
) -> Steps:
    assert models.calibration is not None  # the dispatcher requires it
    z_dim = models.model_config.z_dim
    return drs_steps(seeds, z_dim, labels, options, models.calibration, truncation=truncation)


def _check_keep(options: DRSOptions, calibration: Calibration) -> MethodError | None:
    """keep must lie within the levels the calibration measured gamma for."""
    levels = calibration.drs.keep_levels
    if levels[0] <= options.keep <= levels[-1]:
        return None
    return MethodError(
        f"keep is {options.keep}, but this checkpoint's calibration measured gamma for "
        f"keep {levels[0]:g}..{levels[-1]:g} only (refit it with gan-calibrate)",
        "keep",
    )


SAMPLER = register(
    Sampler(
        "drs",
        "DRS",
        "Discriminator rejection sampling: G proposes images (the first is the plain one) and "
        "each is accepted with a probability from D's calibrated logit; forward passes only. "
        "Cheap: the default choice for better images.",
        DRSOptions,
        (
            OptionSpec(
                "keep",
                "number",
                DRSOptions.keep,
                "Percentile level (0..0.99) of the acceptance score over the pilot set that "
                "sets gamma: higher is stricter (fewer proposals accepted, more tried).",
                minimum=0.0,
                maximum=0.99,
            ),
            OptionSpec(
                "max_proposals",
                "integer",
                DRSOptions.max_proposals,
                "Proposals tried per image at most; if none is accepted, the best-scoring one "
                "is returned.",
                minimum=1,
                maximum=MAX_PROPOSALS_BOUND,
                cap="max_proposals",
            ),
        ),
        example={"keep": 0.9, "max_proposals": 16},
        needs_calibration=True,
        calibration_check=_check_keep,
        steps=_steps,
        order=20,
    )
)
