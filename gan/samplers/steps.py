"""Step machines and their driver, and small helpers the implementations share.

The forward-only methods are written as *step machines* (:data:`Steps`): generators that yield
:class:`Forward` requests (run G on these latents, run D on these images) and receive the
outputs. :func:`run_steps` drives them with any two functions (:func:`gan.sampling.generate`
and :func:`gan.sampling.score` in ``gan-sample``; the service: its batched engine, so proposals
of concurrent requests share forward passes). The gradient methods are plain functions over G
and D that run with gradients enabled (outside ``inference_mode``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Final, Literal

import torch
from torch import nn

from gan.samplers.results import GuidedResult

GENERATOR: Final = "generator"
DISCRIMINATOR: Final = "discriminator"


@dataclass(frozen=True)
class Forward:
    """A forward pass a step machine asks for: G on latents, or D on images (uint8 for the real
    networks), with one class label per row for a conditional model."""

    model: Literal["generator", "discriminator"]
    rows: torch.Tensor
    labels: torch.Tensor | None


#: A step machine: yields :class:`Forward` requests, receives their outputs, returns the result.
Steps = Generator[Forward, torch.Tensor, GuidedResult]
ForwardFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def run_steps(steps: Steps, generate_fn: ForwardFn, score_fn: ForwardFn) -> GuidedResult:
    """Drive a step machine with two synchronous forward functions."""
    try:
        request = next(steps)
        while True:
            run = generate_fn if request.model == GENERATOR else score_fn
            request = steps.send(run(request.rows, request.labels))
    except StopIteration as stop:
        result: GuidedResult = stop.value
        return result


def rows_labels(labels: torch.Tensor | None, index: list[int]) -> torch.Tensor | None:
    return None if labels is None else labels[torch.tensor(index, dtype=torch.int64)]


def twice(labels: torch.Tensor | None) -> torch.Tensor | None:
    return None if labels is None else torch.cat([labels, labels])


def device_of(module: nn.Module) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def call(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    out: torch.Tensor = net(x) if y is None else net(x, y)
    return out
