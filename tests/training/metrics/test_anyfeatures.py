"""The folder feature space (a fixed random CNN): validated on held-out real images.

Blur, noise and a dropped class must each rank monotonically worse than real-vs-real, on gray
digits (MNIST's test set) and on RGB shapes, in FID, KID and (for the dropped class) recall; and
on MNIST it must rank clearly different runs as the MNIST classifier does (the full comparison,
on a dozen runs: ``bench/feature_agreement.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gan.checkpoint import load_checkpoint
from gan.samplers.dispatch import Models, sample
from gan.samplers.plain import PlainOptions
from training.data import load_mnist
from training.metrics.anyfeatures import RandomFeatures, compare
from training.metrics.classifier import load_classifier
from training.metrics.metrics import fid_from_features

N = 800
CHECKPOINTS = Path(__file__).resolve().parents[3] / "checkpoints"


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma + 0.5)
    xs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(xs**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    x = images.float()
    c = x.shape[1]
    kx = kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), kx, groups=c)
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), ky, groups=c)
    return x.round().clamp(0, 255).to(torch.uint8)


def _noise(images: torch.Tensor, std: float, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noisy = images.float() + torch.randn(images.shape, generator=gen) * std * 255
    return noisy.round().clamp(0, 255).to(torch.uint8)


def _shapes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB discs (class 0) and squares (class 1) of random colours, sizes and places."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.zeros((n, 3, 32, 32), np.uint8)
    labels = rng.integers(0, 2, n)
    for i in range(n):
        bg = rng.integers(0, 90, 3)
        fg = rng.integers(120, 256, 3)
        r = rng.integers(5, 11)
        cy, cx = rng.integers(r, 32 - r, 2)
        if labels[i] == 0:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            inside = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        images[i] = np.where(inside[None], fg[:, None, None], bg[:, None, None])
    return torch.from_numpy(images), torch.from_numpy(labels)


def _sets(kind: str, mnist_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(reference, held-out reals, their labels): disjoint real sets of N images."""
    if kind == "mnist":
        test = load_mnist(mnist_dir, split="test")
        assert test.labels is not None
        return test.images[:N], test.images[N : 2 * N], test.labels[N : 2 * N]
    ref, _ = _shapes(N, seed=1)
    held, labels = _shapes(N, seed=2)
    return ref, held, labels


@pytest.mark.parametrize("kind", ["mnist", "shapes"])
def test_corruptions_rank_monotonically_worse(kind: str, mnist_dir: Path) -> None:
    torch.set_num_threads(2)
    net = RandomFeatures()
    ref, held, labels = _sets(kind, mnist_dir)
    real = net.features(ref)

    def score(images: torch.Tensor) -> dict[str, float]:
        return compare(real, net.features(images), kid_subsets=5)

    base = score(held)
    blurs = [score(_blur(held, s)) for s in (0.6, 1.2, 2.4)]
    noises = [score(_noise(held, s)) for s in (0.05, 0.15, 0.3)]
    fids = [base["fid"]] + [b["fid"] for b in blurs]
    assert fids == sorted(fids), f"blur: {fids}"
    fids = [base["fid"]] + [n["fid"] for n in noises]
    assert fids == sorted(fids), f"noise: {fids}"
    kids = [base["kid"]] + [b["kid"] for b in blurs]
    assert kids == sorted(kids), f"blur KID: {kids}"
    # dropping a class: keep one class only (of 2 shapes) or digits 0-4 only
    keep = labels == 0 if kind == "shapes" else labels < 5
    kept = held[keep]
    refill = kept[torch.arange(N) % len(kept)]  # same count, a class missing
    dropped = score(refill)
    assert dropped["fid"] > 2 * base["fid"] + 1e-9
    assert dropped["recall"] < base["recall"] - 0.1
    assert base["precision"] > 0.6 and base["recall"] > 0.6


def test_features_are_fixed_and_size_agnostic() -> None:
    a, b = RandomFeatures(), RandomFeatures()
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    assert np.array_equal(a.features(images), b.features(images))
    big = F.interpolate(images.float(), size=(64, 64), mode="nearest").to(torch.uint8)
    rgb = images.expand(-1, 3, -1, -1)
    assert a.features(big).shape == a.features(rgb).shape == (4, 960)
    assert np.allclose(a.features(images), a.features(rgb))


def test_ranks_clearly_different_runs_as_the_classifier_does(mnist_dir: Path) -> None:
    """Held-out real digits, the bundled GAN's samples and the bundled VAE's (blurry): FID in
    both spaces, against the same real reference, orders them real < GAN < VAE, each step at
    least 1.25x the one before (measured: classifier 4.1, 11.5, 116; anyfeatures 0.42, 0.65,
    1.35)."""
    n = 500
    test = load_mnist(mnist_dir, split="test").images
    reference, sets = test[:1000], {"real": test[1000 : 1000 + n]}
    for name in ("mnist", "mnist-vae"):
        models = Models.of(load_checkpoint(CHECKPOINTS / name))
        sets[name] = sample(models, PlainOptions(), seed=0, n=n).images
    classifier, net = load_classifier(), RandomFeatures()

    def in_classifier(images: torch.Tensor) -> np.ndarray:
        return classifier.features_and_logits(images)[0].double().numpy()

    fids: dict[str, list[float]] = {}
    for space, featurise in (("classifier", in_classifier), ("anyfeatures", net.features)):
        real = featurise(reference)
        fids[space] = [fid_from_features(real, featurise(images)) for images in sets.values()]
    for space, (real, gan, vae) in fids.items():
        assert 1.25 * real < gan and 1.25 * gan < vae, f"{space}: real, GAN, VAE {fids[space]}"
