"""A feature space for any images, offline: a fixed random convolutional network.

The MNIST classifier (:mod:`training.metrics.classifier`) only knows digits. For a user's own
folder there is no pretrained network to download here (nothing may download at run time), so
folder runs are measured in the features of a randomly initialised CNN with a fixed seed:
random convolutional features keep much of the image statistics that FID and precision/recall
compare (Naeem et al. 2020 found randomly initialised embeddings usable for fidelity and
diversity metrics), cost nothing to obtain, and are the same on every machine for every user.
Trustworthy enough only if validated: ``tests/training/metrics/test_anyfeatures.py`` checks, on
held-out real images, that blur, noise and a dropped class each rank monotonically worse, and
``bench/feature_agreement.py`` compares its ranking of MNIST runs with the MNIST
classifier's.

Images of any size and channel count are resized to 32x32 (bilinear, antialiased) and gray is
replicated to RGB; the features of an image are the spatial means and standard deviations of
every layer's activations (4 layers, 960 numbers), so both colour/tone statistics (early
layers) and shape (later layers) count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.metrics.metrics import (
    DEFAULT_K,
    fid_from_features,
    kid_from_features,
    precision_recall,
)

#: The seed of the network's weights: changing it changes every number measured with it.
FEATURE_SEED = 20250108
SIZE = 32
WIDTHS = (32, 64, 128, 256)
#: The feature space's name in reports.
NAME = f"random-cnn-{FEATURE_SEED}"


class RandomFeatures(nn.Module):
    """uint8 [N, C, H, W] (any C in 1, 3; any H, W) -> features [N, 2 * sum(WIDTHS)]."""

    def __init__(self, seed: int = FEATURE_SEED) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Conv2d] = []
        ch = 3
        for i, width in enumerate(WIDTHS):
            conv = nn.Conv2d(ch, width, 3, stride=1 if i == 0 else 2, padding=1)
            with torch.no_grad():
                fan_in = conv.weight[0].numel()
                conv.weight.copy_(
                    torch.randn(conv.weight.shape, generator=gen) * (2 / fan_in) ** 0.5
                )
                assert conv.bias is not None
                conv.bias.zero_()
            layers.append(conv)
            ch = width
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images_uint8: torch.Tensor) -> torch.Tensor:
        x = images_uint8.float() / 127.5 - 1.0  # [N, C, H, W] in [-1, 1]
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True)
        parts: list[torch.Tensor] = []
        for conv in self.layers:
            x = F.relu(conv(x))
            parts += [x.mean(dim=(2, 3)), x.std(dim=(2, 3))]
        return torch.cat(parts, dim=1)

    @torch.no_grad()
    def features(self, images_uint8: torch.Tensor, chunk: int = 500) -> np.ndarray:
        """[N, D] float64 features, ``chunk`` images at a time."""
        out = [self(images_uint8[s : s + chunk]) for s in range(0, len(images_uint8), chunk)]
        return torch.cat(out).double().numpy()


def compare(
    real: np.ndarray, other: np.ndarray, k: int = DEFAULT_K, kid_subsets: int = 100
) -> dict[str, Any]:
    """FID, KID, precision and recall of ``other`` against ``real`` in this feature space."""
    kid, kid_std = kid_from_features(real, other, num_subsets=kid_subsets)
    precision, recall = precision_recall(real, other, k=k)
    return {
        "fid": fid_from_features(real, other),
        "kid": kid,
        "kid_std": kid_std,
        "precision": precision,
        "recall": recall,
    }


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    """uint8 pixels from a dataset's images (uint8 already, or model range [-1, 1])."""
    if images.dtype == torch.uint8:
        return images
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


class FolderQuickFID:
    """The quick FID of a folder run, what picks its ``best`` checkpoint: FID in this feature
    space between the samples and up to ``n`` training images (a seeded subset, features
    computed once). Against training images rather than the few held out, so that its noise
    is low enough to rank checkpoints; ``gan-eval``'s memorisation check guards against a G
    that copies them."""

    metric_name = "fid_anyfeatures_quick"

    def __init__(self, images: torch.Tensor, n: int = 2000, seed: int = 0) -> None:
        self.net = RandomFeatures()
        gen = torch.Generator().manual_seed(seed)
        chosen = torch.randperm(len(images), generator=gen)[: min(n, len(images))]
        with torch.inference_mode():
            self.real = self.net.features(as_uint8(images[chosen]))
        self.num_real = len(chosen)

    def __call__(self, images_uint8: torch.Tensor) -> float:
        with torch.inference_mode():
            return fid_from_features(self.real, self.net.features(images_uint8))
