"""Projection: from an image to the latent (and class) whose ``G(z)`` draws it.

The one projection path, used by ``POST /project``, ``gan-project`` and ``bench/projection.py``:

1. **Start.** A checkpoint with an encoder starts from its guess: a GAN's optional
   :class:`~gan.models.LatentEncoder` (trained on G's own samples, training/encoder.py) gives a
   latent and, for a conditional G, the likely classes; an auto-encoder's encoder gives its
   code (the mean of a VAE's). The other restarts start from seeded ``N(0, I)`` draws.
2. **Candidates.** A given label is used as is. Without one, a conditional model is projected
   under its ``classes`` most likely classes by the encoder (all classes where there is no
   encoder), every candidate with every restart in one batch; the lowest objective wins.
3. **Search.** ``steps`` of Adam over z (G frozen) on pixel MSE plus ``perceptual`` times a
   perceptual distance in the feature maps of the checkpoint's own D (the lecture's point: D
   sees the whole image, not pixels one by one), or of its encoder where there is no D. Nothing
   is downloaded.

The perceptual distance is LPIPS's formula without learned weights: per layer, unit-normalise
each position's feature vector over channels, take the squared difference summed over channels
and averaged over positions; sum the layers. ``mse`` is pixel mean squared error in ``[0, 1]``
units between the uint8 reconstruction and the uint8 target.

Reproducible: for the same checkpoint, image, options and seed (and thread count), the latent
is the same; ``G(z)`` through :func:`gan.sampling.generate` is then exactly ``/generate {"z":
[z]}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gan.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from gan.checkpoint import Checkpoint
    from gan.models import ModelConfig

#: Bounds of the options (the service caps ``steps`` lower, GAN_MAX_PROJECT_STEPS).
MAX_STEPS = 5000
MAX_RESTARTS = 16
#: Beyond this many classes a projection needs a label or an encoder to narrow them.
MAX_CANDIDATE_CLASSES = 100


class ProjectionError(UserError, ValueError):
    """A projection that cannot run as asked (the message says what to change)."""


@dataclass(frozen=True)
class ProjectOptions:
    """How to search: steps of Adam, restarts, candidate classes, the loss."""

    steps: int = 200
    restarts: int = 4
    #: Candidate classes tried when no label is given (the encoder's most likely; with no
    #: encoder, every class).
    classes: int = 3
    lr: float = 0.05
    #: Weight of the perceptual distance against pixel MSE in the search (0, the default:
    #: pixels alone; bench/projection.py measured D's features at 0.1 no better on the bundled
    #: model, at twice the time). The distance is reported either way.
    perceptual: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.steps <= MAX_STEPS:
            raise ProjectionError(f"steps must lie in 0..{MAX_STEPS}, got {self.steps}")
        if not 1 <= self.restarts <= MAX_RESTARTS:
            raise ProjectionError(f"restarts must lie in 1..{MAX_RESTARTS}, got {self.restarts}")
        if not 1 <= self.classes <= MAX_CANDIDATE_CLASSES:
            raise ProjectionError(
                f"classes must lie in 1..{MAX_CANDIDATE_CLASSES}, got {self.classes}"
            )
        if not 0 < self.lr <= 1:
            raise ProjectionError(f"lr must lie in (0, 1], got {self.lr}")
        if not 0 <= self.perceptual <= 100:
            raise ProjectionError(f"perceptual must lie in 0..100, got {self.perceptual}")
        if not 0 <= self.seed < 2**63:
            raise ProjectionError(f"seed must lie in 0..2**63-1, got {self.seed}")


@dataclass
class Projection:
    """One image's projection."""

    z: list[float]
    label: int | None
    image: torch.Tensor  # uint8 [C, R, R]: G(z) (and the class), as /generate draws it
    mse: float  # pixel MSE in [0, 1] units against the target
    distance: float | None  # the perceptual distance (None: no network to measure it with)
    steps: int
    restarts: int
    candidates: list[int | None]  # the classes tried (None: unconditional)
    start: str  # "encoder" or "random"
    seconds: float


FeatureMaps = Callable[["torch.Tensor"], list["torch.Tensor"]]


def feature_network(
    discriminator: nn.Module | None, encoder: nn.Module | None
) -> tuple[FeatureMaps | None, str]:
    """The feature maps the perceptual distance reads, and their name for reports: D's when
    the checkpoint has D, else the encoder's (an auto-encoder), else none."""
    for module, name in ((discriminator, "discriminator"), (encoder, "encoder")):
        maps = getattr(module, "feature_maps", None) if module is not None else None
        if maps is not None:
            return maps, f"{name}-features"
    return None, "none"


def perceptual_distance(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """LPIPS without learned weights between two lists of feature maps ``[B, C_i, H_i, W_i]``:
    ``[B]``."""

    total: torch.Tensor | None = None
    for fa, fb in zip(a, b, strict=True):
        na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-8)
        d = (na - nb).pow(2).sum(1).mean((1, 2))  # [B]
        total = d if total is None else total + d
    assert total is not None
    return total


def encoder_guess(
    encoder: nn.Module | None, x: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The encoder's latent ``[N, z_dim]`` and class logits ``[N, K]`` (or None) for model-range
    images ``x``; ``(None, None)`` without an encoder. An auto-encoder's encoder returns
    ``(mu, logvar)``: its mean is the guess."""
    import torch

    if encoder is None:
        return None, None
    with torch.inference_mode():
        code, second = encoder(x)
    from gan.models import LatentEncoder

    logits = second if isinstance(encoder, LatentEncoder) else None
    return code.float().clone(), None if logits is None else logits.float().clone()


def candidate_classes(
    label: int | None, num_classes: int, logits: torch.Tensor | None, options: ProjectOptions
) -> list[int | None]:
    """The classes to project one image under (see the module doc)."""
    if num_classes == 0:
        return [None]
    if label is not None:
        return [label]
    if logits is not None:
        k = min(options.classes, num_classes)
        return [int(c) for c in logits.topk(k).indices.tolist()]
    if num_classes > MAX_CANDIDATE_CLASSES:
        raise ProjectionError(
            f"this model has {num_classes} classes and no encoder to narrow them: give a label"
        )
    return list(range(num_classes))


def project(
    generator: nn.Module,
    model_config: ModelConfig,
    targets: torch.Tensor,
    labels: Sequence[int | None],
    options: ProjectOptions,
    *,
    discriminator: nn.Module | None = None,
    encoder: nn.Module | None = None,
) -> list[Projection]:
    """Project uint8 images ``[N, C, R, R]`` (one label or None each) into G's latent space.

    The networks are used frozen and in eval mode; runs with gradients on ``z`` only, so it can
    be called from inside ``torch.inference_mode`` code paths (the service's inference thread).
    """
    import torch

    from gan.models import to_model_range
    from gan.sampling import generate

    started = time.perf_counter()
    n, mc = int(targets.shape[0]), model_config
    if len(labels) != n:
        raise ProjectionError(f"{len(labels)} labels for {n} images; give one (or None) each")
    device = next(generator.parameters()).device
    maps_of, _ = feature_network(discriminator, encoder)
    weight = options.perceptual if maps_of is not None else 0.0
    x = to_model_range(targets.to(device))  # [N, C, R, R] in [-1, 1]
    z_guess, class_logits = encoder_guess(encoder, x)
    # Rows: image i x candidate class c x restart r, image-major.
    rows: list[tuple[int, int | None, int]] = []
    cands: list[list[int | None]] = []
    for i in range(n):
        logits_i = None if class_logits is None else class_logits[i]
        cands.append(candidate_classes(labels[i], mc.num_classes, logits_i, options))
        rows += [(i, c, r) for c in cands[i] for r in range(options.restarts)]
    gen = torch.Generator().manual_seed(options.seed)
    random_starts = torch.randn(options.restarts, mc.z_dim, generator=gen)  # [R, z_dim]
    z0 = torch.stack(
        [
            z_guess[i].cpu() if (r == 0 and z_guess is not None) else random_starts[r]
            for i, _, r in rows
        ]
    )  # [rows, z_dim]
    idx = torch.tensor([i for i, _, _ in rows], device=device)
    y = (
        torch.tensor([c for _, c, _ in rows], dtype=torch.int64, device=device)
        if mc.conditional
        else None
    )
    target_rows = x[idx]  # [rows, C, R, R]
    with torch.inference_mode(False), torch.enable_grad():
        target_rows = target_rows.clone()
        with torch.no_grad():
            target_maps = maps_of(target_rows) if maps_of is not None and weight else None
        z = z0.clone().to(device).requires_grad_(True)
        opt = torch.optim.Adam([z], lr=options.lr)
        y_in = None if y is None else y.clone()

        def objective() -> torch.Tensor:  # [rows]
            out = generator(z) if y_in is None else generator(z, y_in)
            loss = (out - target_rows).pow(2).mean((1, 2, 3)) / 4.0  # [0, 1] units
            if target_maps is not None and maps_of is not None:
                loss = loss + weight * perceptual_distance(maps_of(out), target_maps)
            return loss

        for _ in range(options.steps):
            opt.zero_grad(set_to_none=True)
            loss = objective()
            (grad,) = torch.autograd.grad(loss.sum(), [z])
            z.grad = grad
            opt.step()
        with torch.no_grad():
            final = objective().detach().cpu()  # [rows]
        z_final = z.detach().clone()
    # The best row of each image, then its image through the one generate path.
    best: list[int] = []
    for i in range(n):
        mine = [k for k, row in enumerate(rows) if row[0] == i]
        best.append(min(mine, key=lambda k: float(final[k])))
    z_best = z_final[best].cpu()  # [N, z_dim]
    y_best = None if y is None else y[best].cpu()
    images = generate(generator, z_best, y_best)  # uint8 [N, C, R, R]
    mse = ((images.float() - targets.cpu().float()) / 255.0).pow(2).mean((1, 2, 3))  # [N]
    distances: list[float | None] = [None] * n
    if maps_of is not None:
        with torch.inference_mode():
            d = perceptual_distance(
                maps_of(to_model_range(images.to(device))),
                maps_of(to_model_range(targets.to(device))),
            )
        distances = [float(v) for v in d.cpu()]
    seconds = time.perf_counter() - started
    return [
        Projection(
            z=[float(v) for v in z_best[i]],
            label=None if y_best is None else int(y_best[i]),
            image=images[i],
            mse=float(mse[i]),
            distance=distances[i],
            steps=options.steps,
            restarts=options.restarts,
            candidates=cands[i],
            start="encoder" if z_guess is not None else "random",
            seconds=seconds / n,
        )
        for i in range(n)
    ]


def check_projectable(kind: str) -> None:
    """:class:`ProjectionError` for a model kind that cannot project (gan/kinds.py)."""
    from gan.kinds import kinds_with, model_kind

    declared = model_kind(kind)
    if declared.projection == "none" or not declared.has_generator:
        able = [k for k in kinds_with("generator")]
        raise ProjectionError(
            f"this checkpoint is {declared.what()}: there is no generator whose latent an "
            f"image could be projected to; projection needs a {' or '.join(able)} checkpoint"
        )


def project_checkpoint(
    checkpoint: Checkpoint,
    targets: torch.Tensor,
    labels: Sequence[int | None],
    options: ProjectOptions,
) -> list[Projection]:
    """:func:`project` with a loaded checkpoint's networks: its G, its D for the perceptual
    distance, and its encoder (a GAN's optional one, or an auto-encoder's) for the start."""
    check_projectable(checkpoint.kind)
    assert checkpoint.generator is not None
    return project(
        checkpoint.generator,
        checkpoint.model_config,
        targets,
        labels,
        options,
        discriminator=checkpoint.discriminator,
        encoder=checkpoint.encoder,
    )
