"""Model kinds: what a checkpoint holds and what each operation means for it (no torch).

A checkpoint's ``kind`` (``config.json``; docs/lecture.md) is declared here once. Everything
that depends on the kind reads this declaration: the checkpoint reader and writer (which
networks, which format version, whether it may be conditional), the sampling methods (which
networks they need), the service (what ``/score``, ``/generate``, interpolation and projection
answer) and the web page (through ``GET /info``'s ``capabilities``). A new kind is one more
:class:`ModelKind` in :data:`KINDS` (and its trainer in ``training/objectives``).

* ``gan``: G and D; images are G(z). Also every checkpoint without the field.
* ``vae`` / ``ae``: a decoder with G's architecture (stored as the generator) and an encoder, no
  D; images are the decoder of a prior latent.
* ``ebm``: D alone; images come from a Langevin search on D's logit over the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gan.errors import UserError

Network = Literal["generator", "discriminator", "encoder"]
#: What "plain" sampling is: G of a prior latent, or the Langevin search on D over pixels.
PlainSampling = Literal["generator", "langevin_search"]
#: How an image is projected to a latent: optimisation of z through G (started from the
#: encoder where there is one), or not at all.
Projection = Literal["optimise", "encoder", "none"]

#: Every network a checkpoint can hold, in hashing order (the order of the weight files).
NETWORKS: tuple[Network, ...] = ("generator", "discriminator", "encoder")


class UnknownKind(UserError, ValueError):
    """A ``kind`` that no declaration knows."""


@dataclass(frozen=True)
class ModelKind:
    """One model kind, declared once."""

    name: str
    #: One line for ``/info``, the page and the docs.
    summary: str
    #: The networks a checkpoint of this kind holds (the decoder of an auto-encoder counts as
    #: the generator).
    networks: tuple[Network, ...]
    #: The ``format_version`` written for it (GANs stay at 1, as the first version wrote them).
    format_version: int
    #: Whether a checkpoint of this kind may be class-conditional.
    conditional: bool
    plain: PlainSampling
    projection: Projection
    #: Whether the encoder (when there is one) predicts a mean and a log-variance.
    variational: bool = False
    #: Networks a checkpoint of this kind may add (a GAN's encoder, trained on G's samples to
    #: start a projection); they are hash-checked like the others but are not part of the
    #: checkpoint hash (model id), which names what generates and scores.
    optional: tuple[Network, ...] = ()

    @property
    def has_generator(self) -> bool:
        return "generator" in self.networks

    @property
    def has_discriminator(self) -> bool:
        return "discriminator" in self.networks

    @property
    def has_encoder(self) -> bool:
        return "encoder" in self.networks

    @property
    def can_score(self) -> bool:
        """``/score``: D's logit for an image; kinds without D answer 422."""
        return self.has_discriminator

    @property
    def can_interpolate(self) -> bool:
        """A latent path between two seeds exists only where images come from a latent."""
        return self.has_generator and self.plain == "generator"

    @property
    def plain_needs_gradients(self) -> bool:
        """Whether plain sampling runs backward passes (the Langevin search on D)."""
        return self.plain == "langevin_search"

    def what(self) -> str:
        """``a gan (G and D)``, for messages."""
        article = "an" if self.name[0] in "aeiou" else "a"
        return f"{article} {self.name} ({self.summary})"

    def capabilities(self) -> dict[str, object]:
        """For ``GET /info``: what this kind can do, so that clients need no table per kind."""
        return {
            "networks": list(self.networks),
            "score": self.can_score,
            "interpolate": self.can_interpolate,
            "plain_sampling": self.plain,
            "projection": self.projection,
            "optional_networks": list(self.optional),
            "conditional": self.conditional,
        }


KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        ModelKind(
            "gan",
            "G and D",
            ("generator", "discriminator"),
            format_version=1,
            conditional=True,
            plain="generator",
            projection="optimise",
            optional=("encoder",),
        ),
        ModelKind(
            "vae",
            "a decoder and a variational encoder, no D",
            ("generator", "encoder"),
            format_version=2,
            conditional=False,
            plain="generator",
            projection="encoder",
            variational=True,
        ),
        ModelKind(
            "ae",
            "a decoder and an encoder, no D",
            ("generator", "encoder"),
            format_version=2,
            conditional=False,
            plain="generator",
            projection="encoder",
        ),
        ModelKind(
            "ebm",
            "D alone",
            ("discriminator",),
            format_version=2,
            conditional=False,
            plain="langevin_search",
            projection="none",
        ),
    )
}
DEFAULT_KIND = "gan"
MODEL_KINDS: tuple[str, ...] = tuple(KINDS)


def model_kind(name: str) -> ModelKind:
    """The declaration of ``name``; :class:`UnknownKind` names the valid ones."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):
        raise UnknownKind(f"'kind' must be one of {', '.join(MODEL_KINDS)}, got {name!r}") from None


def kinds_with(network: Network) -> tuple[str, ...]:
    """The kinds whose checkpoints hold ``network``."""
    return tuple(name for name, kind in KINDS.items() if network in kind.networks)
