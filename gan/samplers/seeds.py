"""Seeds of proposals and of each method's random draws.

Image ``i`` of seed ``S`` has image seed ``s = S + i`` (:mod:`gan.latents`). Its proposal ``k``
has the latent of seed :func:`proposal_seed` ``(s, k)``, with ``k = 0`` the plain latent ``s``
itself (so ``plain`` is proposal 0, and ``drs`` and ``mh`` draw the same proposals); its
acceptance draws, Langevin noise and starting noise come from a ``torch.Generator`` seeded by
:func:`method_generator` ``(s, method)``. Nothing depends on the other images of a request or
on how they are batched, so a seed (with its label, method and options) always gives the same
image.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from gan.latents import seed_latent


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
