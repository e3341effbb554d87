"""What a model kind's training objective is, for the one training loop (training/loop.py).

The loop owns everything that does not depend on the kind: the data order, the devices and
precision, the random generators, the EMA of G, logs, grids, evaluation, checkpoints and exact
resume. An :class:`Objective` owns the rest:

* which of G (``"g"``) and D (``"d"``) it trains (:meth:`Objective.build_networks`: those the
  kind declares, seeded as :func:`gan.models.build_models` seeds them) and the optimisers and other networks it adds
  (:meth:`Objective.setup`);
* one training iteration (:meth:`Objective.step`, which draws its batches from
  ``loop.batches``) and what the progress bar shows of it;
* its own part of the resume state (:meth:`Objective.state`);
* the network it exports for sampling, what the grids and the quick evaluation sample with it,
  and the networks and config its checkpoints hold.

Each kind's objective is one file in this package that registers itself with
:func:`register` under the model kinds (gan/kinds.py) it trains.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from gan.kinds import ModelKind, model_kind
from gan.models import build_models
from gan.sampling import class_labels, generate, latents
from training.export import recalibrate_batchnorm

if TYPE_CHECKING:
    from training.loop import Trainer

#: The objective class of each model kind name, filled by :func:`register`.
REGISTRY: dict[str, type[Objective]] = {}


def register(*kinds: str) -> Callable[[type[Objective]], type[Objective]]:
    """Class decorator: ``cls`` trains checkpoints of ``kinds``."""

    def add(cls: type[Objective]) -> type[Objective]:
        for name in kinds:
            model_kind(name)  # a declared kind
            REGISTRY[name] = cls
        return cls

    return add


def with_memory_format(module: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """``module.to(memory_format=fmt)`` (torch's stubs lack that overload)."""
    return module.to(memory_format=fmt)  # type: ignore[call-overload,no-any-return]


class Objective(ABC):
    """One model kind's training objective, plugged into ``loop`` (a :class:`Trainer`)."""

    #: check_finite's advice when a statistic of :meth:`step` stops being finite.
    hint: ClassVar[str] = "lower the learning rates"

    def __init__(self, loop: Trainer) -> None:
        self.loop = loop
        self.cfg = loop.cfg
        self.mc = loop.mc
        self.kind: ModelKind = model_kind(loop.cfg.kind)
        self.optimisers: dict[str, torch.optim.Optimizer] = {}

    def build_networks(self) -> dict[str, nn.Module]:
        """Freshly initialised G (``"g"``) and / or D (``"d"``) on the CPU, as the kind
        declares them. Both are drawn from ``cfg.seed`` as :func:`gan.models.build_models`
        draws a GAN's, so that every kind's initial weights for a seed stay what they were; the
        network the kind lacks is dropped at once (it is never trained, saved or exported)."""
        g, d = build_models(self.mc, seed=self.cfg.seed)
        networks: dict[str, nn.Module] = {}
        if self.kind.has_generator:
            networks["g"] = g
        if self.kind.has_discriminator:
            networks["d"] = d
        return networks

    @abstractmethod
    def setup(self) -> None:
        """Called once the loop holds the networks on its device: build the optimisers
        (``self.optimisers``, resume keys ``opt_g`` / ``opt_d``) and anything else."""

    @abstractmethod
    def step(self) -> dict[str, float]:
        """One training iteration on batches from ``loop.batches``; its statistics (the loop
        then updates the EMA of G and counts the step)."""

    @abstractmethod
    def progress_fields(self, stats: dict[str, float]) -> dict[str, str]:
        """What the progress bar shows of a step's statistics."""

    def state(self) -> dict[str, Any]:
        """The objective's own part of the resume state (beyond networks and optimisers)."""
        return {}

    def load_state(self, s: dict[str, Any]) -> None:
        """Restore :meth:`state` from a resume state (nothing by default)."""
        return None

    # ---- export and sampling ----------------------------------------------------------------

    def export(self) -> nn.Module:
        """The network that samples: by default the EMA generator (or G) with its BatchNorm
        statistics re-estimated on prior latents."""
        loop = self.loop
        source = loop.g_ema if loop.g_ema is not None else loop.g
        g = recalibrate_batchnorm(
            source, self.mc.z_dim, seed=self.cfg.seed + 3, num_classes=self.mc.num_classes
        )
        return with_memory_format(g, torch.contiguous_format)

    def samples(
        self, exported: nn.Module, seeds: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images of ``seeds`` drawn as gan-sample draws them (classes seed mod K) and
        their classes; the grids and the quick evaluation use it."""
        labels = class_labels(seeds, self.mc.num_classes)
        return generate(exported, latents(self.mc.z_dim, seeds=seeds), labels), labels

    def checkpoint_parts(
        self, exported: nn.Module, d: nn.Module | None
    ) -> tuple[dict[str, Any], dict[str, nn.Module | None]]:
        """The extra ``build_config`` arguments and the networks of a checkpoint (by
        ``save_checkpoint`` argument name), from :meth:`export`'s result and a frozen copy of
        D (None without D)."""
        return {"kind": self.kind.name}, {"generator": exported, "discriminator": d}
