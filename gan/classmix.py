"""A class-conditional generator's class input: one class per row, or a mix of two.

A conditional G embeds its class ``y`` into a vector and feeds it beside ``z``. An
interpolation across classes needs the embedding *between* two classes as well: a
:class:`ClassMix` gives, per row, two classes ``a`` and ``b`` and a weight ``t``, and
:func:`embed_classes` returns ``lerp(embed(a), embed(b), t)``. Rows with ``t == 0`` get exactly
``embed(a)`` and rows with ``t == 1`` (or ``a == b``) exactly ``embed(b)``, bit for bit, so the
ends of a path are the images of the plain labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ClassMix:
    """Per row: classes ``a`` and ``b`` (int64 ``[B]``) and the weight of ``b``, ``t``
    (float32 ``[B]``, in [0, 1])."""

    a: torch.Tensor
    b: torch.Tensor
    t: torch.Tensor

    def __post_init__(self) -> None:
        rows = tuple(self.a.shape)
        if len(rows) != 1 or tuple(self.b.shape) != rows or tuple(self.t.shape) != rows:
            raise ValueError(
                f"a class mix needs a, b and t of one shape [B], got {tuple(self.a.shape)}, "
                f"{tuple(self.b.shape)} and {tuple(self.t.shape)}"
            )

    @classmethod
    def of_labels(cls, labels: torch.Tensor) -> ClassMix:
        """Plain classes as a mix (``a = b = labels``, ``t = 0``): the same embedding."""
        return cls(labels, labels, torch.zeros(labels.shape, dtype=torch.float32))

    @classmethod
    def between(cls, a: int, b: int, weights: Sequence[float]) -> ClassMix:
        """The rows of a path from class ``a`` to class ``b`` at positions ``weights``."""
        n = len(weights)
        return cls(
            torch.full((n,), a, dtype=torch.int64),
            torch.full((n,), b, dtype=torch.int64),
            torch.tensor(list(weights), dtype=torch.float32),
        )

    @classmethod
    def cat(cls, parts: Sequence[ClassMix | torch.Tensor]) -> ClassMix:
        """Rows of several mixes (or plain label tensors) one after the other."""
        mixes = [p if isinstance(p, ClassMix) else cls.of_labels(p) for p in parts]
        return cls(
            torch.cat([m.a for m in mixes]),
            torch.cat([m.b for m in mixes]),
            torch.cat([m.t for m in mixes]),
        )

    @property
    def shape(self) -> torch.Size:
        """``[B]``, like a label tensor's."""
        return self.a.shape

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def __getitem__(self, rows: slice) -> ClassMix:
        return ClassMix(self.a[rows], self.b[rows], self.t[rows])

    def to(self, device: torch.device | str) -> ClassMix:
        return ClassMix(self.a.to(device), self.b.to(device), self.t.to(device))

    def min(self) -> int:
        """The smallest class index named."""
        return min(int(self.a.min()), int(self.b.min()))

    def max(self) -> int:
        """The largest class index named."""
        return max(int(self.a.max()), int(self.b.max()))


#: What a conditional generator takes as its class input.
Classes = torch.Tensor | ClassMix


def embed_classes(embed: nn.Embedding, y: Classes) -> torch.Tensor:
    """``embed(y)`` for class indices, the per-row mix of two embeddings for a
    :class:`ClassMix`: ``[B, embedding_dim]``; exact at ``t = 0``, ``t = 1`` and ``a == b``."""
    if not isinstance(y, ClassMix):
        return embed(y)
    ea, eb = embed(y.a), embed(y.b)
    t = y.t.to(ea.dtype)[:, None]  # [B, 1]
    mixed = torch.lerp(ea, eb, t)
    mixed = torch.where(t == 0, ea, mixed)
    return torch.where((t == 1) | (y.a == y.b)[:, None], eb, mixed)
