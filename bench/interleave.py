"""Train several recipes side by side on one machine, fairly: interleaved time slices.

Each trainer runs for ``slice_s`` seconds in turn until each has spent ``budget_s`` seconds in
its own training steps, so machine noise (other jobs, thermal changes) hits all alike. Used by
``bench/train_budget.py`` and ``bench/recipe_search.py``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from training.loop import Trainer


def train_interleaved(
    trainers: Mapping[str, Trainer], budget_s: float, slice_s: float, report_every_s: float = 60.0
) -> float:
    """Run the trainers round-robin until each has ``budget_s`` seconds of steps; wall seconds."""
    started = time.perf_counter()
    last_report = started
    while any(t.train_seconds < budget_s for t in trainers.values()):
        for t in trainers.values():
            if t.train_seconds >= budget_s:
                continue
            end = time.perf_counter() + min(slice_s, budget_s - t.train_seconds)
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                t.train_step()
                t.train_seconds += time.perf_counter() - t0
        if time.perf_counter() - last_report > report_every_s:
            last_report = time.perf_counter()
            print(
                "  "
                + "  ".join(
                    f"{n}: step {t.step} ({t.train_seconds:.0f} s)" for n, t in trainers.items()
                ),
                flush=True,
            )
    return time.perf_counter() - started
