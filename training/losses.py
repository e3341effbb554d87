"""GAN objectives on raw logits (D outputs logits; sigmoid(logit) = D(x) in the lecture's notation).

D's objective is the same for the non-saturating and the minimax game: maximise
``log D(x) + log(1 - D(G(z)))``, i.e. minimise ``softplus(-D_logit(x)) + softplus(D_logit(G(z)))``.
G's objective differs:

* ``minimax``: minimise ``log(1 - D(G(z))) = -softplus(logit)`` (the original formulation; its
  gradient vanishes when D confidently rejects G's samples, early in training).
* ``nonsat`` (default): maximise ``log D(G(z))``, i.e. minimise ``softplus(-logit)``.
* ``hinge``: D minimises ``relu(1 - real) + relu(1 + fake)``, G minimises ``-fake``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("nonsat", "minimax", "hinge")


def d_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Loss D minimises, averaged over the batch."""
    if kind in ("nonsat", "minimax"):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


def g_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """Loss G minimises with D fixed, averaged over the batch."""
    if kind == "nonsat":
        return F.softplus(-fake_logits).mean()
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")


def r1_penalty(discriminator: nn.Module, real: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean squared gradient norm of D's logit at real images."""
    real = real.detach().requires_grad_(True)
    logits = discriminator(real)
    (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()
