"""``plain``: the kind's own sampling. G alone for a gan, vae or ae (G of each seed's latent;
an auto-encoder's decoder is stored as its G); for an ebm, which has D alone, the Langevin
search on D over the pixels it was trained with (:func:`gan.samplers.ebm.ebm_search`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gan.samplers.registry import Sampler, register

if TYPE_CHECKING:
    import torch

    from gan.samplers.dispatch import Models
    from gan.samplers.results import GuidedResult
    from gan.samplers.steps import Steps


@dataclass(frozen=True)
class PlainOptions:
    """``plain`` takes no options."""


def plain_steps(
    seeds: Sequence[int],
    z_dim: int,
    labels: torch.Tensor | None,
    *,
    truncation: float | None = None,
) -> Steps:
    """G alone: one generator forward; D is not run."""
    from gan.samplers.results import Cost, GuidedResult, ImageStats
    from gan.samplers.steps import GENERATOR, Forward
    from gan.sampling import latents

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


def _steps(
    models: Models,
    options: PlainOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    truncation: float | None,
) -> Steps:
    return plain_steps(seeds, models.model_config.z_dim, labels, truncation=truncation)


def _search(
    models: Models,
    options: PlainOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    truncation: float | None,
) -> GuidedResult:
    from gan.samplers.ebm import EBMSearch, ebm_search

    return ebm_search(models.d, seeds, models.model_config, models.ebm or EBMSearch())


SAMPLER = register(
    Sampler(
        "plain",
        "plain",
        "Plain sampling: G draws each image from its seed's latent; D is not consulted. The "
        "default.",
        PlainOptions,
        needs_seeds=False,
        kind_plain=True,
        steps=_steps,
        gradient=_search,
        order=10,
    )
)
