"""Stacked MNIST (training/metrics/stacked.py, bench/stacked_mnist.py): data and mode counting."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from training.data import ImageData, load_mnist
from training.metrics.classifier import Classifier, load_classifier
from training.metrics.stacked import NUM_MODES, count_modes, mode_statistics, stack_digits

SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints" / "mnist-classifier"


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    torch.set_num_threads(1)
    return load_classifier(SHIPPED)


@pytest.fixture(scope="module")
def test_set(mnist_dir: Path) -> ImageData:
    return load_mnist(mnist_dir, "test")


def test_stack_digits_channels_and_labels(test_set: ImageData) -> None:
    data = stack_digits(test_set, 50, seed=3)
    assert data.images.shape == (50, 3, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert len(data.classes) == NUM_MODES and data.classes[123] == "123"
    # Every channel is one of the source digits, and the label spells the three digits.
    src = test_set.images[:, 0].reshape(len(test_set), -1)
    assert test_set.labels is not None
    for img, label in zip(data.images[:5], data.labels[:5], strict=True):
        digits = []
        for c in range(3):
            hit = (src == img[c].reshape(1, -1)).all(dim=1).nonzero()[0, 0]
            digits.append(int(test_set.labels[hit]))
        assert int(label) == 100 * digits[0] + 10 * digits[1] + digits[2]
    assert torch.equal(stack_digits(test_set, 50, seed=3).images, data.images)
    assert not torch.equal(stack_digits(test_set, 50, seed=4).images, data.images)


def test_real_stacked_images_cover_the_modes(classifier: Classifier, test_set: ImageData) -> None:
    # 5,000 uniform draws over 1,000 modes hit 1000 (1 - e^-5) ~ 993 of them on average, and
    # the histogram's KL to uniform is about 999 / (2 * 5000) ~ 0.1 from sampling alone.
    data = stack_digits(test_set, 5000, seed=0)
    r = count_modes(classifier, data.images)
    assert r["n"] == 5000
    assert r["modes"] > 980, r
    assert r["kl"] < 0.15, r
    assert r["readable"] > 0.9, r


def test_a_collapsed_generator_has_one_mode(classifier: Classifier, test_set: ImageData) -> None:
    one = stack_digits(test_set, 1, seed=1).images.expand(300, -1, -1, -1)
    r = count_modes(classifier, one)
    assert r["modes"] == 1 and r["top_mode_share"] == 1.0
    assert r["kl"] == pytest.approx(math.log(1000))


def test_mode_statistics_on_known_histograms() -> None:
    uniform = mode_statistics(torch.arange(NUM_MODES).repeat(3))
    assert uniform["modes"] == NUM_MODES and uniform["kl"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(uniform["readable"])
    half = mode_statistics(torch.arange(500), torch.tensor([True, False]).repeat(250))
    assert half["modes"] == 500 and half["kl"] == pytest.approx(math.log(2))
    assert half["readable"] == 0.5
    with pytest.raises(ValueError):
        mode_statistics(torch.zeros(0, dtype=torch.int64))
