"""What a sampling method returns: images, per-image statistics (:class:`ImageStats`) and the
cost of making them (:class:`Cost`), as one :class:`GuidedResult`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from gan.samplers.registry import MethodOptions


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
