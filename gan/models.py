"""Generator and discriminator networks, built from a :class:`ModelConfig` alone.

Pure ``nn.Module`` code: no file or network I/O happens here. Images are tensors shaped
``[B, C, H, W]`` with values in ``[-1, 1]`` (see :data:`NORMALISATION`); latents are ``[B, z_dim]``.

Three architectures are available:

* ``"dcgan"`` (default): DCGAN-style transposed-conv generator with BatchNorm and a
  LeakyReLU conv discriminator without normalisation, so D's output for one image never depends
  on the other images in its batch (the service batches requests together).
* ``"classic"``: the well-known 32x32 Keras/PyTorch-GAN DCGAN MNIST recipe (Linear to 128x8x8,
  two upsample+conv blocks with BatchNorm; D of four stride-2 conv blocks with LeakyReLU,
  dropout 0.25 and BatchNorm). Kept as the baseline for ``bench/train_budget.py``.
* ``"r3gan"``: residual G and D without normalisation, after R3GAN (Huang et al. 2025); see
  :mod:`gan.r3gan`. Trained with the ``rpgan`` loss (relativistic pairing, R1 and R2).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from gan.classmix import Classes, embed_classes
from gan.errors import UserError
from gan.kinds import kinds_with
from gan.r3gan import BLOCKS_PER_STAGE, EXPANSION, R3Discriminator, R3Generator

SUPPORTED_RESOLUTIONS = (28, 32, 64)
#: The kinds with a generator (a decoder counts), a discriminator and an encoder (declared in
#: :mod:`gan.kinds`; kept here for the callers that already import them).
KINDS_WITH_GENERATOR = kinds_with("generator")
KINDS_WITH_DISCRIMINATOR = kinds_with("discriminator")
KINDS_WITH_ENCODER = kinds_with("encoder")
SUPPORTED_CHANNELS = (1, 3)
ARCHITECTURES = ("dcgan", "classic", "r3gan")

# How uint8 pixels map to network inputs/outputs; stored in every checkpoint's config.json.
NORMALISATION: dict[str, Any] = {
    "range": [-1.0, 1.0],
    "to_model": "x / 127.5 - 1",
    "from_model": "round((y + 1) * 127.5), clipped to [0, 255]",
    "layout": "NCHW",
}


#: The fields of :class:`ModelConfig` that shape ``arch="r3gan"`` alone, with their defaults
#: (the network as it was before they existed).
R3GAN_ONLY: dict[str, int] = {"blocks_per_stage": BLOCKS_PER_STAGE, "expansion": EXPANSION}


class ConfigError(UserError, ValueError):
    """Raised when a :class:`ModelConfig` describes an unsupported network."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild G and D (saved into every checkpoint)."""

    resolution: int = 28
    channels: int = 1
    z_dim: int = 64
    g_width: int = 64  # channels of G's last hidden block; earlier blocks double it
    d_width: int = 64  # channels of D's first block; later blocks double it
    arch: str = "dcgan"
    num_classes: int = 0  # 0: unconditional; K: G and D take a class index in 0..K-1
    # arch "r3gan" only (gan/r3gan.py): residual blocks per stage and the inverted bottleneck's
    # expansion. Written to config.json only when they differ from these defaults, so that the
    # configs of every other model (and of checkpoints written before them) stay as they were.
    blocks_per_stage: int = BLOCKS_PER_STAGE
    expansion: int = EXPANSION

    def __post_init__(self) -> None:
        if self.resolution not in SUPPORTED_RESOLUTIONS:
            raise ConfigError(
                f"resolution must be one of {SUPPORTED_RESOLUTIONS}, got {self.resolution}"
            )
        if self.channels not in SUPPORTED_CHANNELS:
            raise ConfigError(f"channels must be one of {SUPPORTED_CHANNELS}, got {self.channels}")
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"arch must be one of {ARCHITECTURES}, got {self.arch!r}")
        if self.arch == "classic" and self.resolution != 32:
            raise ConfigError(
                "the 'classic' baseline architecture is defined for resolution 32 only"
            )
        for name in ("z_dim", "g_width", "d_width"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 4096:
                raise ConfigError(f"{name} must be an integer in 1..4096, got {value!r}")
        for name in R3GAN_ONLY:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16:
                raise ConfigError(f"{name} must be an integer in 1..16, got {value!r}")
            if self.arch != "r3gan" and value != R3GAN_ONLY[name]:
                raise ConfigError(
                    f"{name} applies to arch 'r3gan' only (this model is {self.arch!r}); leave "
                    f"it at {R3GAN_ONLY[name]}"
                )
        k = self.num_classes
        if isinstance(k, bool) or not isinstance(k, int) or not (k == 0 or 2 <= k <= 10_000):
            raise ConfigError(f"num_classes must be 0 (unconditional) or 2..10000, got {k!r}")
        if k and self.arch == "classic":
            raise ConfigError("the 'classic' baseline architecture is unconditional only")

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def num_upsamples(self) -> int:
        """Number of x2 stages between G's first feature map and the output image."""
        return 2 if self.resolution == 28 else int(math.log2(self.resolution // 4))

    @property
    def base_size(self) -> int:
        """Spatial size of G's first feature map (7 for 28x28, 4 for 32 and 64)."""
        return self.resolution // (2**self.num_upsamples)

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON; the r3gan-only ones only where they differ from their defaults
        (a config written before them reads back equal, and is written as it was)."""
        d = asdict(self)
        for name, default in R3GAN_ONLY.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown model config keys: {unknown}")
        return cls(**data)


# --------------------------------------------------------------------------------------------
# DCGAN-style networks
# --------------------------------------------------------------------------------------------


class Generator(nn.Module):
    """z [B, z_dim] (and class y [B] when conditional) -> image [B, C, R, R] in [-1, 1].

    A conditional G embeds the class into a vector of z's size and projects ``[z, embed(y)]``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_up = cfg.num_upsamples
        top = cfg.g_width * 2 ** (n_up - 1)  # channels of the first feature map
        s0 = cfg.base_size
        self.top, self.s0 = top, s0
        # [B] -> [B, z_dim]
        self.embed = nn.Embedding(cfg.num_classes, cfg.z_dim) if cfg.conditional else None
        z_in = cfg.z_dim * (2 if cfg.conditional else 1)
        # [B, z_in] -> [B, top * s0 * s0], reshaped to [B, top, s0, s0]
        self.project = nn.Sequential(
            nn.Linear(z_in, top * s0 * s0, bias=False),
            nn.BatchNorm1d(top * s0 * s0),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        ch = top
        for _ in range(n_up - 1):
            # [B, ch, s, s] -> [B, ch/2, 2s, 2s]
            blocks += [
                nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(ch // 2),
                nn.ReLU(inplace=True),
            ]
            ch //= 2
        # [B, g_width, R/2, R/2] -> [B, C, R, R]
        blocks += [nn.ConvTranspose2d(ch, cfg.channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, y: Classes | None = None) -> torch.Tensor:
        """``y``: class indices ``[B]``, or a :class:`~gan.classmix.ClassMix` of two per row."""
        if self.embed is not None:
            if y is None:
                raise ValueError("this generator is class-conditional: pass class indices y")
            z = torch.cat([z, embed_classes(self.embed, y)], dim=1)  # [B, 2 * z_dim]
        h = self.project(z).view(-1, self.top, self.s0, self.s0)  # [B, top, s0, s0]
        return self.body(h)  # [B, C, R, R]


def sequential_maps(body: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``body`` over ``x`` and keep the output of every LeakyReLU: one feature map per
    block of a conv body."""
    maps: list[torch.Tensor] = []
    h = x
    for layer in body:
        h = layer(h)
        if isinstance(layer, nn.LeakyReLU):
            maps.append(h)
    return maps


def conv_body(cfg: ModelConfig) -> tuple[nn.Sequential, int]:
    """D's convolutional body (the Encoder's too) and its flattened output size: stride-2 convs
    with LeakyReLU, widths from ``d_width`` doubling, halving the spatial size until it reaches
    7 (28) or 4 (32, 64)."""
    layers: list[nn.Module] = []
    ch_in, ch = cfg.channels, cfg.d_width
    size = cfg.resolution
    while size > cfg.base_size:
        # [B, ch_in, s, s] -> [B, ch, s/2, s/2]
        layers += [nn.Conv2d(ch_in, ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        ch_in, ch, size = ch, ch * 2, size // 2
    return nn.Sequential(*layers), ch_in * size * size


class Discriminator(nn.Module):
    """image [B, C, R, R] in [-1, 1] (and class y [B] when conditional) -> one logit per image.

    A conditional D is a projection discriminator (Miyato and Koyama 2018): the logit is
    ``head(h) + <embed(y), h>`` for the image's features ``h``, so it scores the (image, class)
    pair.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.features, feat = conv_body(cfg)  # [B, C, R, R] -> [B, ...] (flattened: feat)
        # [B, feat] -> [B, 1]
        self.head = nn.Linear(feat, 1)
        # [B] -> [B, feat]
        self.embed = nn.Embedding(cfg.num_classes, feat) if cfg.conditional else None

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activation after each of D's blocks, ``[B, ch_i, s_i, s_i]``: what D sees at each
        scale (gan/projection.py's perceptual distance)."""
        return sequential_maps(self.features, x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x).flatten(1)  # [B, feat]
        logit = self.head(h).squeeze(1)  # [B]
        if self.embed is not None:
            if y is None:
                raise ValueError("this discriminator is class-conditional: pass class indices y")
            logit = logit + (self.embed(y) * h).sum(1)  # [B]
        return logit


class Encoder(nn.Module):
    """image [B, C, R, R] in [-1, 1] -> code: ``(mu, logvar)`` ``[B, z_dim]`` each for a
    variational encoder, ``(code, None)`` for a plain one.

    D's convolutional body (stride-2 convs with LeakyReLU, widths from ``d_width``) followed by
    a linear head, so an auto-encoder has the same network sizes as a GAN of the same config.
    Unconditional only.
    """

    def __init__(self, cfg: ModelConfig, variational: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.variational = variational
        self.features, feat = conv_body(cfg)  # D's body: [B, C, R, R] -> [B, feat] flattened
        # [B, feat] -> [B, 2 * z_dim] (mu, logvar) or [B, z_dim]
        self.head = nn.Linear(feat, cfg.z_dim * (2 if variational else 1))

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activation after each conv block (as :meth:`Discriminator.feature_maps`)."""
        return sequential_maps(self.features, x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.head(self.features(x).flatten(1))  # [B, z_dim * (2 or 1)]
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)  # [B, z_dim] each
        return mu, logvar


def build_encoder(cfg: ModelConfig, variational: bool = True) -> Encoder:
    if cfg.conditional:
        raise ConfigError("auto-encoders are unconditional only: num_classes must be 0")
    return Encoder(cfg, variational)


class LatentEncoder(nn.Module):
    """A GAN's optional encoder: image [B, C, R, R] in [-1, 1] -> ``(z, class_logits)``: the
    latent ``[B, z_dim]`` that G maps (close) to the image and, for a conditional G, logits
    ``[B, K]`` of the class it was drawn with (None for an unconditional one).

    Trained on G's own samples (training/encoder.py) to start a projection
    (gan/projection.py); D's conv body followed by two linear heads.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.features, feat = conv_body(cfg)  # [B, C, R, R] -> [B, feat] flattened
        self.head = nn.Linear(feat, cfg.z_dim)  # [B, feat] -> [B, z_dim]
        # [B, feat] -> [B, K]
        self.classes = nn.Linear(feat, cfg.num_classes) if cfg.conditional else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        h = self.features(x).flatten(1)  # [B, feat]
        return self.head(h), None if self.classes is None else self.classes(h)


def build_latent_encoder(cfg: ModelConfig, seed: int | None = None) -> LatentEncoder:
    """A freshly initialised :class:`LatentEncoder` (DCGAN initialisation)."""
    if seed is not None:
        torch.manual_seed(seed)
    encoder = LatentEncoder(cfg)
    init_weights(encoder)
    return encoder


# --------------------------------------------------------------------------------------------
# The classic 32x32 MNIST DCGAN recipe (baseline for the training benchmark)
# --------------------------------------------------------------------------------------------


class ClassicGenerator(nn.Module):
    """z [B, z_dim] -> image [B, C, 32, 32]: Linear to 128x8x8, two upsample+conv blocks."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.project = nn.Linear(cfg.z_dim, 128 * 8 * 8)  # [B, z] -> [B, 128*8*8]
        self.body = nn.Sequential(
            nn.BatchNorm2d(128),
            nn.Upsample(scale_factor=2),  # [B, 128, 16, 16]
            nn.Conv2d(128, 128, 3, 1, 1),
            nn.BatchNorm2d(128, 0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),  # [B, 128, 32, 32]
            nn.Conv2d(128, 64, 3, 1, 1),  # [B, 64, 32, 32]
            nn.BatchNorm2d(64, 0.8),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(64, cfg.channels, 3, 1, 1),  # [B, C, 32, 32]
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.body(self.project(z).view(-1, 128, 8, 8))


class ClassicDiscriminator(nn.Module):
    """image [B, C, 32, 32] -> logit [B]: four stride-2 conv blocks (16, 32, 64, 128 channels)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg

        def block(cin: int, cout: int, bn: bool = True) -> list[nn.Module]:
            layers: list[nn.Module] = [
                nn.Conv2d(cin, cout, 3, 2, 1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Dropout2d(0.25),
            ]
            if bn:
                layers.append(nn.BatchNorm2d(cout, 0.8))
            return layers

        self.features = nn.Sequential(
            *block(cfg.channels, 16, bn=False),  # [B, 16, 16, 16]
            *block(16, 32),  # [B, 32, 8, 8]
            *block(32, 64),  # [B, 64, 4, 4]
            *block(64, 128),  # [B, 128, 2, 2]
        )
        self.head = nn.Linear(128 * 2 * 2, 1)  # [B, 512] -> [B, 1]

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activation after each conv block (as :meth:`Discriminator.feature_maps`)."""
        return sequential_maps(self.features, x)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x).flatten(1)).squeeze(1)


# --------------------------------------------------------------------------------------------


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) for conv/linear weights, N(1, 0.02) for norm scales."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, 0.02)


def build_generator(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "r3gan":
        return R3Generator(cfg)
    return ClassicGenerator(cfg) if cfg.arch == "classic" else Generator(cfg)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    if cfg.arch == "r3gan":
        return R3Discriminator(cfg)
    return ClassicDiscriminator(cfg) if cfg.arch == "classic" else Discriminator(cfg)


def build_models(cfg: ModelConfig, seed: int | None = None) -> tuple[nn.Module, nn.Module]:
    """Build freshly initialised (G, D); ``seed`` makes the initialisation reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    g, d = build_generator(cfg), build_discriminator(cfg)
    if cfg.arch != "r3gan":  # R3GAN's networks initialise themselves (gan/r3gan.py)
        init_weights(g)
        init_weights(d)
    return g, d


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] in 0..255 -> float32 in [-1, 1]."""
    return images_uint8.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [B, C, H, W] in [-1, 1] -> uint8 in 0..255 (rounded, clipped)."""
    return ((images.detach().float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
