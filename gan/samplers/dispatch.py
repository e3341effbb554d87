"""The one dispatcher of the sampling methods: ``gan-sample --method``, ``gan-eval --method``,
``bench/d_guided.py`` and the service engine all run a method through this module.

A method's declaration (:mod:`gan.samplers.registry`) says whether it is a step machine
(forward passes only: :func:`method_steps`, driven by :func:`~gan.samplers.steps.run_steps` or
the service's batched engine) or a gradient method (:func:`run_gradient_method`, run with
``inference_mode`` off); :func:`runs_gradients` decides which, per model kind (an ebm's plain
sampling is its Langevin search). :func:`sample_method` / :func:`sample` are the entry points.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gan.checkpoint import Calibration, Checkpoint
from gan.latents import image_seeds
from gan.models import ModelConfig
from gan.samplers.ebm import EBMSearch
from gan.samplers.options import MethodError
from gan.samplers.registry import (
    MethodOptions,
    Sampler,
    calibration_missing,
    check_kind,
    method_of,
    method_spec,
    runs_gradients,
)
from gan.samplers.results import GuidedResult
from gan.samplers.steps import Steps, run_steps
from gan.sampling import DEFAULT_CHUNK, class_labels, generate, score


@dataclass(frozen=True)
class Models:
    """What the methods need: G and D in eval mode (either None where the kind has none), their
    config, D's calibration, the kind and, for an ebm, its Langevin search."""

    generator: nn.Module | None
    discriminator: nn.Module | None
    model_config: ModelConfig
    calibration: Calibration | None
    path: Path | None = None  # named in errors
    kind: str = "gan"
    ebm: EBMSearch | None = None

    @classmethod
    def of(cls, checkpoint: Checkpoint) -> Models:
        return cls(
            checkpoint.generator,
            checkpoint.discriminator,
            checkpoint.model_config,
            checkpoint.config.calibration,
            checkpoint.path,
            checkpoint.kind,
            checkpoint.config.ebm,
        )

    @property
    def g(self) -> nn.Module:
        """G; :class:`MethodError` for a kind without one (check_kind refuses earlier)."""
        if self.generator is None:
            raise MethodError(f"this {self.kind} checkpoint has no generator")
        return self.generator

    @property
    def d(self) -> nn.Module:
        """D; :class:`MethodError` for a kind without one."""
        if self.discriminator is None:
            raise MethodError(f"this {self.kind} checkpoint has no discriminator")
        return self.discriminator


def require_calibration(method: str, models: Models) -> Calibration | None:
    """The calibration when ``method`` needs one; :class:`CalibrationMissing` when it is absent."""
    if not method_spec(method).needs_calibration:
        return models.calibration
    if models.calibration is None:
        raise calibration_missing(method, models.path)
    return models.calibration


def _checked(models: Models, options: MethodOptions) -> Sampler:
    spec = method_spec(method_of(options))
    check_kind(models.kind, spec.name, options)
    return spec


def method_steps(
    models: Models,
    options: MethodOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    *,
    truncation: float | None = None,
) -> Steps:
    """The step machine of a forward-only method (plain, drs, mh; not an ebm's plain)."""
    spec = _checked(models, options)
    if runs_gradients(models.kind, spec.name):
        raise MethodError(
            f"method {spec.name!r} needs gradients on a {models.kind}; it has no step machine"
        )
    require_calibration(spec.name, models)
    if spec.steps is None:
        raise MethodError(f"method {spec.name!r} needs gradients; it has no step machine")
    return spec.steps(models, options, seeds, labels, truncation)


def run_gradient_method(
    models: Models,
    options: MethodOptions,
    seeds: Sequence[int],
    labels: torch.Tensor | None,
    *,
    truncation: float | None = None,
) -> GuidedResult:
    """Run a gradient method (langevin, pixel_ascent) on these images, or an ebm's plain
    sampling (its Langevin search); call it with ``inference_mode`` off."""
    spec = _checked(models, options)
    if spec.gradient is None or not runs_gradients(models.kind, spec.name):
        raise MethodError(f"method {spec.name!r} is forward-only; use method_steps")
    require_calibration(spec.name, models)
    return spec.gradient(models, options, seeds, labels, truncation)


def sample_method(
    models: Models,
    options: MethodOptions,
    *,
    seeds: Sequence[int],
    labels: torch.Tensor | None = None,
    truncation: float | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> GuidedResult:
    """Images for these image seeds (and classes ``[N]`` of a conditional model) by a method.

    Works through the seeds ``chunk`` images at a time (forward passes of at most ``chunk``
    rows for plain and the gradient methods; drs and mh send each chunk's proposals through G
    and D in passes of at most ``chunk`` rows); chunking changes no image.
    """
    started = time.perf_counter()
    spec = method_spec(method_of(options))
    check_kind(models.kind, spec.name, options)
    require_calibration(spec.name, models)
    gradients = runs_gradients(models.kind, spec.name)

    def gen(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return generate(models.g, z, y, chunk=chunk)

    def disc(x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return score(models.d, x, y, chunk=chunk)

    parts: list[GuidedResult] = []
    for start in range(0, len(seeds), max(1, chunk)):
        block = list(seeds[start : start + chunk])
        y = None if labels is None else labels[start : start + chunk]
        if gradients:
            parts.append(run_gradient_method(models, options, block, y, truncation=truncation))
        else:
            steps = method_steps(models, options, block, y, truncation=truncation)
            parts.append(run_steps(steps, gen, disc))
    if not parts:
        raise MethodError("no images to make: give at least one seed")
    result = GuidedResult.concat(parts)
    result.seconds = time.perf_counter() - started
    return result


def sample(
    models: Models,
    options: MethodOptions,
    *,
    seed: int,
    n: int,
    truncation: float | None = None,
    labels: Sequence[int] | int | None = None,
    chunk: int = DEFAULT_CHUNK,
) -> GuidedResult:
    """``n`` images with the image seeds ``seed .. seed + n - 1`` by a method: what
    ``gan-sample --method`` writes and ``gan-eval --method`` evaluates (classes as in
    :func:`gan.sampling.class_labels`)."""
    seeds = image_seeds(seed, n)
    y = class_labels(seeds, models.model_config.num_classes, labels)
    return sample_method(models, options, seeds=seeds, labels=y, truncation=truncation, chunk=chunk)
