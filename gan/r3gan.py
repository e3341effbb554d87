"""R3GAN-style networks (``arch="r3gan"``): residual G and D without normalisation layers.

After Huang et al. 2025, "The GAN is dead; long live the GAN! A Modern GAN Baseline" (arXiv
2501.05441), scaled down for 28-64 px images on a CPU:

* every stage is ``ModelConfig.blocks_per_stage`` residual blocks (two by default)
  ``x + conv1x1(act(gconv3x3(act(conv1x1(x)))))``: an inverted bottleneck (expanded
  ``ModelConfig.expansion`` times, two by default) with a grouped 3x3 convolution (groups of
  ``GROUP_WIDTH`` channels), LeakyReLU(0.2), no normalisation of any kind, so D's logit for an
  image never depends on the rest of its batch;
* stages are joined by transition layers: in G a 1x1 convolution then bilinear upsampling, in
  D average pooling then a 1x1 convolution;
* G starts from a linear basis of the latent at the smallest size (7x7 for 28 px, 4x4 for 32
  and 64) and ends in a 1x1 convolution with no tanh (the image range is learnt; outputs are
  clipped only when they become pixels); D ends in a depthwise convolution over the whole
  smallest feature map and a linear logit, with the projection term for a class-conditional
  model, as the DCGAN D here;
* initialisation after the paper's fix-up scheme: the last convolution of every residual branch
  starts at zero (every block starts as the identity) and the others are He-initialised, scaled
  by ``L ** (-1 / (2 m - 2))`` for ``L`` blocks of ``m = 3`` layers, so that the variance of the
  output does not grow with depth.

Widths follow the DCGAN networks of the same :class:`~gan.models.ModelConfig`: ``g_width`` is
the channels of G's highest-resolution stage and doubles towards the smallest one (at most
once); ``d_width`` likewise for D. Width, ``blocks_per_stage`` and ``expansion`` are the knobs of
the network's cost (``--recipe r3gan-small`` turns all three down for a CPU).
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from gan.classmix import Classes, embed_classes

if TYPE_CHECKING:
    from gan.models import ModelConfig

#: Channels of a residual block's inner layer, per input channel (ModelConfig.expansion's
#: default).
EXPANSION = 2
#: Channels per group of the grouped 3x3 convolution.
GROUP_WIDTH = 16
#: Residual blocks per stage (ModelConfig.blocks_per_stage's default).
BLOCKS_PER_STAGE = 2
#: Slope of the LeakyReLU.
SLOPE = 0.2
#: The gain of He initialisation for that LeakyReLU.
GAIN = math.sqrt(2.0 / (1.0 + SLOPE**2))


def stage_widths(width: int, stages: int) -> list[int]:
    """Channels per stage from the smallest feature map to the largest: ``width`` at the
    largest, twice that at every smaller one (a CPU-sized network)."""
    return [width * 2 ** min(1, stages - 1 - i) for i in range(stages)]


def _he(layer: nn.Conv2d | nn.Linear, scale: float = 1.0) -> None:
    fan_in = layer.weight[0].numel()
    nn.init.normal_(layer.weight, 0.0, scale * GAIN / math.sqrt(fan_in))
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ResidualBlock(nn.Module):
    """[B, C, H, W] -> [B, C, H, W]: ``x + branch(x)``, an inverted bottleneck."""

    def __init__(self, channels: int, total_blocks: int, expansion: int = EXPANSION) -> None:
        super().__init__()
        inner = channels * expansion
        groups = max(1, inner // GROUP_WIDTH)
        while inner % groups:
            groups -= 1
        self.expand = nn.Conv2d(channels, inner, 1)  # [B, C, H, W] -> [B, EC, H, W]
        self.spatial = nn.Conv2d(inner, inner, 3, padding=1, groups=groups)  # grouped 3x3
        self.project = nn.Conv2d(inner, channels, 1)  # [B, EC, H, W] -> [B, C, H, W]
        scale = total_blocks ** (-1.0 / (2 * 3 - 2))
        _he(self.expand, scale)
        _he(self.spatial, scale)
        nn.init.zeros_(self.project.weight)
        if self.project.bias is not None:
            nn.init.zeros_(self.project.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.expand(x), SLOPE)
        h = F.leaky_relu(self.spatial(h), SLOPE)
        return x + self.project(h)


def _stage(channels: int, cfg: ModelConfig, total_blocks: int) -> nn.Sequential:
    return nn.Sequential(
        *(ResidualBlock(channels, total_blocks, cfg.expansion) for _ in range(cfg.blocks_per_stage))
    )


class R3Generator(nn.Module):
    """z [B, z_dim] (and class y [B] when conditional) -> image [B, C, R, R], about [-1, 1]."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stages = cfg.num_upsamples + 1
        widths = stage_widths(cfg.g_width, stages)
        total = stages * cfg.blocks_per_stage
        self.s0, self.top = cfg.base_size, widths[0]
        # [B] -> [B, z_dim]
        self.embed = nn.Embedding(cfg.num_classes, cfg.z_dim) if cfg.conditional else None
        z_in = cfg.z_dim * (2 if cfg.conditional else 1)
        # [B, z_in] -> [B, top * s0 * s0], reshaped to [B, top, s0, s0]
        self.basis = nn.Linear(z_in, widths[0] * self.s0 * self.s0)
        _he(self.basis)
        self.stages = nn.ModuleList(_stage(w, cfg, total) for w in widths)
        # [B, w_i, s, s] -> [B, w_i+1, s, s] (then upsampled to 2s)
        transitions = [nn.Conv2d(a, b, 1) for a, b in itertools.pairwise(widths)]
        for t in transitions:
            _he(t, 1.0 / GAIN)  # linear layers: unit gain
        self.transitions = nn.ModuleList(transitions)
        # [B, w_last, R, R] -> [B, C, R, R]
        self.to_image = nn.Conv2d(widths[-1], cfg.channels, 1)
        _he(self.to_image, 1.0 / GAIN)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0)

    def forward(self, z: torch.Tensor, y: Classes | None = None) -> torch.Tensor:
        """``y``: class indices ``[B]``, or a :class:`~gan.classmix.ClassMix` of two per row."""
        if self.embed is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass class indices y")
            z = torch.cat([z, embed_classes(self.embed, y)], dim=1)  # [B, 2 * z_dim]
        h = self.basis(z).view(-1, self.top, self.s0, self.s0)  # [B, top, s0, s0]
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i < len(self.transitions):
                h = self.transitions[i](h)  # [B, w_i+1, s, s]
                h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
        return self.to_image(h)  # [B, C, R, R]


class R3Discriminator(nn.Module):
    """image [B, C, R, R] (and class y [B] when conditional) -> one logit per image."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stages = cfg.num_upsamples + 1
        widths = stage_widths(cfg.d_width, stages)[::-1]  # largest feature map first
        total = stages * cfg.blocks_per_stage
        # [B, C, R, R] -> [B, w_0, R, R]
        self.from_image = nn.Conv2d(cfg.channels, widths[0], 1)
        _he(self.from_image, 1.0 / GAIN)
        self.stages = nn.ModuleList(_stage(w, cfg, total) for w in widths)
        # [B, w_i, s/2, s/2] -> [B, w_i+1, s/2, s/2] (after pooling)
        transitions = [nn.Conv2d(a, b, 1) for a, b in itertools.pairwise(widths)]
        for t in transitions:
            _he(t, 1.0 / GAIN)
        self.transitions = nn.ModuleList(transitions)
        top, s0 = widths[-1], cfg.base_size
        # [B, top, s0, s0] -> [B, top, 1, 1]: one weight per channel and position
        self.basis = nn.Conv2d(top, top, s0, groups=top)
        _he(self.basis, 1.0 / GAIN)
        self.head = nn.Linear(top, 1)  # [B, top] -> [B, 1]
        _he(self.head, 1.0 / GAIN)
        # [B] -> [B, top]
        self.embed = nn.Embedding(cfg.num_classes, top) if cfg.conditional else None
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 1.0 / math.sqrt(top))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each stage, ``[B, w_i, s_i, s_i]`` (largest first): what D sees at
        each scale (gan/projection.py's perceptual distance)."""
        maps: list[torch.Tensor] = []
        h = self.from_image(x)
        for i, stage in enumerate(self.stages):
            h = stage(h)
            maps.append(h)
            if i < len(self.transitions):
                h = self.transitions[i](F.avg_pool2d(h, 2))  # [B, w_i+1, s/2, s/2]
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, R, R] -> [B, top]: the vector the logit is read from."""
        return self.basis(self.feature_maps(x)[-1]).flatten(1)  # [B, top]

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)  # [B, top]
        logit = self.head(h).squeeze(1)  # [B]
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass class indices y")
            logit = logit + (self.embed(y) * h).sum(1)  # [B]
        return logit
