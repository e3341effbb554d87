"""The training objective of each model kind, plugged into the one loop (training/loop.py).

:func:`objective_for` finds a run's objective by its model kind (gan/kinds.py). Each module of
this package other than ``base`` is one kind's objective and registers itself
(:func:`training.objectives.base.register`), so a new kind is one new file here.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from training.config import TrainConfig, TrainingError
from training.objectives.base import REGISTRY, Objective


@functools.cache
def _load_all() -> None:
    """Import every objective module once (each registers itself)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


def objective_for(cfg: TrainConfig) -> type[Objective]:
    """The objective class that trains checkpoints of ``cfg.kind``."""
    _load_all()
    try:
        return REGISTRY[cfg.kind]
    except KeyError:
        raise TrainingError(f"no training objective for model kind {cfg.kind!r}") from None


__all__ = ["Objective", "objective_for"]
