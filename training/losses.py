"""GAN objectives as loss objects in a registry (D outputs logits; sigmoid(logit) = D(x)).

A loss owns both halves of the game: :meth:`GANLoss.d_objective` is what D minimises with G
fixed (including the R1 penalty when enabled) and :meth:`GANLoss.g_objective` what G minimises
with D fixed. The trainer only calls these two, so a new loss is one registered subclass:

    @register("mine")
    class Mine(GANLoss):
        def d_loss(self, real_logits, fake_logits): ...
        def g_loss(self, fake_logits): ...

D's objective is the same for the non-saturating and the minimax game: maximise
``log D(x) + log(1 - D(G(z)))``, i.e. minimise ``softplus(-D_logit(x)) + softplus(D_logit(G(z)))``.
G's objective differs:

* ``minimax``: minimise ``log(1 - D(G(z))) = -softplus(logit)`` (the original formulation; its
  gradient vanishes when D confidently rejects G's samples, early in training).
* ``nonsat`` (default): maximise ``log D(G(z))``, i.e. minimise ``softplus(-logit)``.
* ``hinge``: D minimises ``relu(1 - real) + relu(1 + fake)``, G minimises ``-fake``.
* ``rpgan``: the relativistic pairing GAN of R3GAN (Huang et al. 2025): D minimises
  ``softplus(D(G(z)) - D(x))`` over pairs of a real and a fake image, G minimises
  ``softplus(D(x) - D(G(z)))``, with zero-centred gradient penalties on both real (R1) and fake
  (R2) images, each ``gamma / 2 * E||grad D||^2`` (``--r1-gamma`` sets gamma for both). G's
  objective needs real images: pairing is what removes the mode dropping of the classic loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

#: name -> loss class; ``gan-train --loss`` offers exactly these.
LOSSES: dict[str, type[GANLoss]] = {}


def register(name: str) -> Callable[[type[GANLoss]], type[GANLoss]]:
    def add(cls: type[GANLoss]) -> type[GANLoss]:
        LOSSES[name] = cls
        cls.name = name
        return cls

    return add


def _forward(d: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """D's logits; the labels go in only for a conditional D (any module works otherwise)."""
    return d(x) if labels is None else d(x, labels)


def gradient_penalty(
    discriminator: nn.Module, images: torch.Tensor, labels: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean squared gradient norm of D's logit at ``images``: R1 at real images (Mescheder et
    al. 2018), R2 at fake ones."""
    images = images.detach().requires_grad_(True)
    logits = _forward(discriminator, images, labels)
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grad.pow(2).flatten(1).sum(1).mean()


class GANLoss:
    """Base class: subclasses define :meth:`d_loss` and :meth:`g_loss` on logits."""

    name = "base"

    def __init__(self, r1_gamma: float = 0.0, r1_every: int = 4) -> None:
        self.r1_gamma = r1_gamma  # penalty (gamma / 2) * E||grad D(x)||^2; 0 disables it
        self.r1_every = r1_every  # lazy regularisation: every k D steps, scaled by k
        #: D's logits on the real images of the last D step (detached), for ADA's heuristic.
        self.last_real_logits: torch.Tensor | None = None

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Loss D minimises, averaged over the batch."""
        raise NotImplementedError

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """Loss G minimises with D fixed, averaged over the batch."""
        raise NotImplementedError

    def d_objective(
        self,
        d: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        d_iter: int,
        real_labels: torch.Tensor | None = None,
        fake_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """D's full objective for one step (``d_iter`` counts D steps, for lazy R1); the labels
        are the classes of a conditional model."""
        real_logits = _forward(d, real, real_labels)
        fake_logits = _forward(d, fake, fake_labels)
        loss = self.d_loss(real_logits, fake_logits)
        self.last_real_logits = real_logits.detach()  # for ADA's overfitting heuristic
        stats: dict[str, float] = {}
        if self.r1_gamma > 0 and d_iter % self.r1_every == 0:
            r1 = gradient_penalty(d, real, real_labels)
            loss = loss + 0.5 * self.r1_gamma * self.r1_every * r1
            stats["r1"] = r1.item()
        stats["d_real"] = torch.sigmoid(real_logits.detach()).mean().item()
        stats["d_fake"] = torch.sigmoid(fake_logits.detach()).mean().item()
        return loss, stats

    #: Whether :meth:`g_objective` needs real images (a relativistic loss pairs them).
    needs_real_for_g = False

    def g_objective(
        self,
        d: nn.Module,
        fake: torch.Tensor,
        fake_labels: torch.Tensor | None = None,
        real: torch.Tensor | None = None,
        real_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """G's objective for one step (D's parameters are frozen by the caller); ``real`` is
        used only by losses with :attr:`needs_real_for_g`."""
        return self.g_loss(_forward(d, fake, fake_labels))


@register("nonsat")
class NonSaturating(GANLoss):
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake_logits).mean()


@register("minimax")
class Minimax(NonSaturating):
    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -F.softplus(fake_logits).mean()


@register("hinge")
class Hinge(GANLoss):
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        return -fake_logits.mean()


@register("rpgan")
class RelativisticPairing(GANLoss):
    """RpGAN + R1 + R2 (R3GAN). Real and fake images are paired in batch order."""

    needs_real_for_g = True

    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        return F.softplus(fake_logits - real_logits).mean()

    def g_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise TypeError("rpgan's G loss pairs fake with real logits: use g_objective")

    def d_objective(
        self,
        d: nn.Module,
        real: torch.Tensor,
        fake: torch.Tensor,
        d_iter: int,
        real_labels: torch.Tensor | None = None,
        fake_labels: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        loss, stats = super().d_objective(d, real, fake, d_iter, real_labels, fake_labels)
        if self.r1_gamma > 0 and d_iter % self.r1_every == 0:
            r2 = gradient_penalty(d, fake, fake_labels)
            loss = loss + 0.5 * self.r1_gamma * self.r1_every * r2
            stats["r2"] = r2.item()
        return loss, stats

    def g_objective(
        self,
        d: nn.Module,
        fake: torch.Tensor,
        fake_labels: torch.Tensor | None = None,
        real: torch.Tensor | None = None,
        real_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if real is None:
            raise ValueError("rpgan pairs each fake image with a real one: pass real images")
        n = min(len(real), len(fake))
        fake_logits = _forward(d, fake[:n], None if fake_labels is None else fake_labels[:n])
        real_logits = _forward(d, real[:n], None if real_labels is None else real_labels[:n])
        return F.softplus(real_logits.detach() - fake_logits).mean()


def build_loss(name: str, *, r1_gamma: float = 0.0, r1_every: int = 4) -> GANLoss:
    """The registered loss ``name``; ValueError for an unknown one."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {tuple(LOSSES)}")
    return LOSSES[name](r1_gamma=r1_gamma, r1_every=r1_every)
