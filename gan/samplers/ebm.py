"""An ebm checkpoint's sampling: :class:`EBMSearch` (its stored settings, no torch) and the
Langevin search on D's logit over the pixels (:func:`langevin_pixels`, shared with
``training/ebm.py``; :func:`ebm_search`, the kind's ``plain`` sampling)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from gan.samplers.options import MAX_STEPS_BOUND, MethodError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gan.models import ModelConfig
    from gan.samplers.results import GuidedResult

#: The service setting that caps an ebm's search steps (its steps are Langevin steps).
EBM_STEPS_CAP = "max_langevin_steps"


@dataclass(frozen=True)
class EBMSearch:
    """How an ``ebm`` checkpoint makes an image (``config.json`` ``ebm``): ``steps`` Langevin
    steps on D's logit over the pixels from uniform noise in [-1, 1],

        x <- clip(x + step_size * clip(grad_x D(x), -grad_clip, grad_clip) + noise * N(0, I), -1, 1)

    (Du and Mordatch 2019; their step size 10 with gradients clipped to 0.01 moves a pixel by at
    most 0.1 per step). Written by the trainer from its options; fixed per checkpoint."""

    steps: int = 60
    step_size: float = 10.0
    grad_clip: float = 0.01
    noise: float = 0.005

    @classmethod
    def from_config(cls, data: Any) -> EBMSearch:
        """Validate a stored ``ebm`` entry; :class:`MethodError` says what is wrong."""
        if not isinstance(data, dict):
            raise MethodError(
                f"'ebm' must be an object with {', '.join(f.name for f in fields(cls))}"
            )
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise MethodError(f"'ebm' has unknown keys {unknown}")
        steps = data.get("steps", cls.steps)
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= MAX_STEPS_BOUND
        ):
            raise MethodError(
                f"'ebm.steps' must be an integer in 1..{MAX_STEPS_BOUND}, got {steps!r}"
            )
        values: dict[str, float] = {}
        for name in ("step_size", "grad_clip", "noise"):
            v = data.get(name, getattr(cls, name))
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or (v < 0 or (v == 0 and name != "noise"))
            ):
                raise MethodError(f"'ebm.{name}' must be a finite number above 0, got {v!r}")
            values[name] = float(v)
        return cls(steps, values["step_size"], values["grad_clip"], values["noise"])

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


NoiseFn = Callable[[int], "torch.Tensor"]  # step t -> N(0, 1) noise of the images' shape


def langevin_pixels(
    discriminator: nn.Module,
    x: torch.Tensor,
    search: EBMSearch,
    noise_fn: NoiseFn,
    steps: int | None = None,
) -> torch.Tensor:
    """``steps`` (default ``search.steps``) Langevin steps on D's logit over the pixels:
    ``x <- clip(x + step_size * clip(grad D(x), +-grad_clip) + noise * N(0, I), -1, 1)``.

    ``x``: float ``[B, C, R, R]`` in [-1, 1] on D's device; ``noise_fn(t)`` gives step ``t``'s
    standard normal noise (CPU or D's device). Runs with gradients enabled whatever the caller's
    mode, touches no parameter's gradient, and returns the detached result. The EBM's trainer
    finds its negatives with it and :func:`ebm_search` samples with it."""
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone()
        for t in range(search.steps if steps is None else steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(discriminator(x).float().sum(), x)
            kick = noise_fn(t).to(x.device)
            step = search.step_size * grad.clamp(-search.grad_clip, search.grad_clip)
            x = (x.detach() + step + search.noise * kick).clamp_(-1.0, 1.0)
    return x.detach()


def ebm_search(
    discriminator: nn.Module,
    seeds: Sequence[int],
    model_config: ModelConfig,
    search: EBMSearch,
) -> GuidedResult:
    """An ebm checkpoint's images (its ``plain`` sampling): :func:`langevin_pixels` from each
    image's own uniform noise, with the step noise drawn from the image's own generator
    (:func:`method_generator` ``(s, "ebm")``), so an image seed always gives the same image."""
    import torch

    from gan.models import to_uint8
    from gan.samplers.plain import PlainOptions
    from gan.samplers.results import Cost, GuidedResult, ImageStats
    from gan.samplers.seeds import method_generator
    from gan.samplers.steps import device_of
    from gan.sampling import score

    started = time.perf_counter()
    n = len(seeds)
    mc = model_config
    shape = (mc.channels, mc.resolution, mc.resolution)
    draws = [method_generator(s, "ebm") for s in seeds]
    start = torch.stack([torch.rand(shape, generator=g) for g in draws]).mul_(2.0).sub_(1.0)

    def noise(t: int) -> torch.Tensor:
        return torch.stack([torch.randn(shape, generator=g) for g in draws])

    x = langevin_pixels(discriminator, start.to(device_of(discriminator)), search, noise)
    images = to_uint8(x).cpu()
    both = score(discriminator, torch.cat([to_uint8(start), images]), chunk=max(1, 2 * n))
    stats = [
        ImageStats(0, search.steps, None, float(both[i]), float(both[n + i])) for i in range(n)
    ]
    cost = Cost(
        discriminator_forwards=n * (search.steps + 2), discriminator_backwards=n * search.steps
    )
    return GuidedResult(
        "plain", PlainOptions(), images, None, stats, cost, seconds=time.perf_counter() - started
    )
