"""Stacked MNIST: three MNIST digits as the R, G and B channels, 1,000 equally likely modes.

The mode-coverage protocol of PacGAN, VEEGAN and R3GAN: :func:`stack_digits` builds the data
(each channel an independently drawn digit, label ``100 * d_R + 10 * d_G + d_B``) and
:func:`count_modes` reads generated (or real) images with the MNIST classifier, one channel at a
time, and reports the distinct modes, the KL divergence of the mode histogram to the uniform
distribution over the 1,000 modes and the share of images whose three digits are all read with
confidence. ``bench/stacked_mnist.py`` trains on it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from training.imagedata import ImageData
from training.metrics.classifier import Classifier

NUM_MODES = 1000
#: A channel is *readable* when the classifier's softmax maximum on it is above this.
READABLE_CONFIDENCE = 0.9


def stack_digits(digits: ImageData, n: int, seed: int, name: str = "stacked-mnist") -> ImageData:
    """``n`` RGB images uint8 ``[n, 3, 28, 28]``: each channel a digit of ``digits`` (uint8
    ``[M, 1, 28, 28]`` with labels) drawn independently and uniformly at random (seeded); label
    ``100 * d_R + 10 * d_G + d_B``, classes ``"000"`` .. ``"999"``."""
    if digits.labels is None or digits.images.dim() != 4 or digits.images.shape[1] != 1:
        raise ValueError("stack_digits needs labelled gray digits [M, 1, H, W]")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(digits), (n, 3), generator=g)  # [n, 3]: R, G, B source images
    images = digits.images[idx.reshape(-1), 0].reshape(n, 3, *digits.images.shape[2:])
    d = digits.labels[idx]  # [n, 3]
    labels = (100 * d[:, 0] + 10 * d[:, 1] + d[:, 2]).to(torch.int64)
    info = {
        "name": name,
        "source": digits.info.get("name", "mnist"),
        "source_split": digits.info.get("split"),
        "num_images": n,
        "seed": seed,
        "resolution": int(images.shape[-1]),
        "channels": 3,
        "modes": NUM_MODES,
    }
    return ImageData(images.contiguous(), labels, info, [f"{k:03d}" for k in range(NUM_MODES)])


def read_modes(classifier: Classifier, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[N, 3, H, W]`` -> (mode int64 ``[N]`` in 0..999, readable bool ``[N]``): each
    channel classified on its own as a gray digit ``[N, 1, H, W]``."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"stacked images must be [N, 3, H, W], got {tuple(images.shape)}")
    modes = torch.zeros(images.shape[0], dtype=torch.int64)
    readable = torch.ones(images.shape[0], dtype=torch.bool)
    for c, weight in enumerate((100, 10, 1)):
        _, logits = classifier.features_and_logits(images[:, c : c + 1].contiguous())
        conf, digit = logits.softmax(dim=1).max(dim=1)
        modes += weight * digit
        readable &= conf > READABLE_CONFIDENCE
    return modes, readable


def mode_statistics(modes: torch.Tensor, readable: torch.Tensor | None = None) -> dict[str, Any]:
    """The histogram's summary: ``modes`` (distinct modes hit), ``kl`` = KL(p_model || uniform
    over 1,000) = sum over hit modes of ``p log(p * 1000)`` (natural log; log 1000 = 6.91 for a
    single mode) and ``readable`` (share of images with all three digits confident)."""
    n = int(modes.numel())
    if n == 0:
        raise ValueError("no images to count modes in")
    counts = torch.bincount(modes, minlength=NUM_MODES).double()
    p = counts[counts > 0] / n
    kl = float((p * (p * NUM_MODES).log()).sum())
    return {
        "n": n,
        "modes": int((counts > 0).sum()),
        "kl": max(kl, 0.0),
        "readable": float(readable.float().mean()) if readable is not None else math.nan,
        "top_mode_share": float(counts.max() / n),
    }


def count_modes(classifier: Classifier, images: torch.Tensor) -> dict[str, Any]:
    """:func:`mode_statistics` of :func:`read_modes` for uint8 ``[N, 3, H, W]`` images."""
    modes, readable = read_modes(classifier, images)
    return mode_statistics(modes, readable)
