"""gan/projection.py: D's feature maps on every architecture, the perceptual distance, the
candidate classes, option bounds, and projections of real digits on the bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig, build_discriminator, build_encoder, build_latent_encoder
from gan.projection import (
    ProjectionError,
    ProjectOptions,
    candidate_classes,
    check_projectable,
    perceptual_distance,
    project,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("arch", "resolution", "channels"),
    [(a, r, c) for a in ("dcgan", "r3gan") for r, c in ((28, 1), (32, 3), (64, 3))]
    + [("classic", 32, 1)],  # the classic architecture is 32 px only
)
def test_feature_maps_on_every_architecture(arch: str, resolution: int, channels: int) -> None:
    cfg = ModelConfig(resolution=resolution, channels=channels, g_width=4, d_width=4, arch=arch)
    d = build_discriminator(cfg).eval()
    x = torch.rand(2, channels, resolution, resolution) * 2 - 1
    maps = d.feature_maps(x)
    assert len(maps) >= 2
    assert all(m.shape[0] == 2 and m.ndim == 4 for m in maps)
    assert maps[0].shape[-1] >= maps[-1].shape[-1]  # coarser with depth


def test_encoder_feature_maps_and_latent_encoder_shapes() -> None:
    cfg = ModelConfig(g_width=4, d_width=4, z_dim=8)
    assert len(build_encoder(cfg).feature_maps(torch.zeros(1, 1, 28, 28))) >= 2
    cond = ModelConfig(g_width=4, d_width=4, z_dim=8, num_classes=5)
    z, logits = build_latent_encoder(cond)(torch.zeros(3, 1, 28, 28))
    assert z.shape == (3, 8) and logits is not None and logits.shape == (3, 5)
    z, logits = build_latent_encoder(cfg)(torch.zeros(3, 1, 28, 28))
    assert logits is None


def test_perceptual_distance_is_zero_on_itself_and_grows_with_change() -> None:
    d = build_discriminator(ModelConfig(g_width=8, d_width=8)).eval()
    x = torch.rand(1, 1, 28, 28) * 2 - 1
    near = (x + 0.05 * torch.randn_like(x)).clamp(-1, 1)
    far = (x + 0.5 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        same = perceptual_distance(d.feature_maps(x), d.feature_maps(x))
        small = perceptual_distance(d.feature_maps(near), d.feature_maps(x))
        large = perceptual_distance(d.feature_maps(far), d.feature_maps(x))
    assert float(same) == pytest.approx(0.0, abs=1e-6)
    assert 0 < float(small) < float(large)


def test_candidate_classes() -> None:
    opts = ProjectOptions(classes=2)
    assert candidate_classes(None, 0, None, opts) == [None]
    assert candidate_classes(3, 10, None, opts) == [3]
    assert candidate_classes(None, 4, None, opts) == [0, 1, 2, 3]
    logits = torch.tensor([0.1, 3.0, -1.0, 2.0])
    assert candidate_classes(None, 4, logits, opts) == [1, 3]
    with pytest.raises(ProjectionError, match="label"):
        candidate_classes(None, 1000, None, opts)


@pytest.mark.parametrize(
    "bad", [{"steps": -1}, {"steps": 10**6}, {"restarts": 0}, {"lr": 0.0}, {"perceptual": -1}]
)
def test_option_bounds(bad: dict[str, float]) -> None:
    with pytest.raises(ProjectionError):
        ProjectOptions(**bad)  # type: ignore[arg-type]


def test_only_kinds_with_a_generator_project() -> None:
    for kind in ("gan", "vae", "ae"):
        check_projectable(kind)
    with pytest.raises(ProjectionError, match="ebm"):
        check_projectable("ebm")


def test_bundled_model_projects_real_digits(mnist_dir: Path) -> None:
    """Four MNIST test digits, no label: each comes back close, as its own digit's class."""
    from training.mnist import load_mnist

    ckpt = load_checkpoint(ROOT / "checkpoints" / "mnist")
    assert ckpt.generator is not None
    test = load_mnist(mnist_dir, split="test")
    assert test.labels is not None
    images, truth = test.images[:4], test.labels[:4]
    options = ProjectOptions(steps=60, restarts=2)
    results = project(
        ckpt.generator,
        ckpt.model_config,
        images,
        [None] * 4,
        options,
        discriminator=ckpt.discriminator,
        encoder=ckpt.encoder,
    )
    assert all(r.mse < 0.02 for r in results), [r.mse for r in results]
    assert [r.label for r in results] == [int(t) for t in truth]
    # Reproducible: the same call gives the same latents.
    once, twice = (
        project(
            ckpt.generator,
            ckpt.model_config,
            images[:1],
            [None],
            options,
            discriminator=ckpt.discriminator,
            encoder=ckpt.encoder,
        )[0]
        for _ in range(2)
    )
    assert once.z == twice.z and torch.equal(once.image, twice.image)
