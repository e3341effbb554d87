"""gan.r3gan: residual G and D without normalisation, at every size, and the rpgan loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gan.models import (
    SUPPORTED_CHANNELS,
    SUPPORTED_RESOLUTIONS,
    ConfigError,
    ModelConfig,
    build_models,
)
from gan.r3gan import R3Discriminator, R3Generator, ResidualBlock
from training.losses import build_loss, gradient_penalty


def _cfg(resolution: int = 28, channels: int = 1, num_classes: int = 0, **kw: int) -> ModelConfig:
    return ModelConfig(
        resolution=resolution,
        channels=channels,
        z_dim=16,
        g_width=16,
        d_width=16,
        arch="r3gan",
        num_classes=num_classes,
        **kw,
    )


@pytest.mark.parametrize("resolution", SUPPORTED_RESOLUTIONS)
@pytest.mark.parametrize("channels", SUPPORTED_CHANNELS)
@pytest.mark.parametrize("num_classes", [0, 3])
def test_shapes_and_gradients_at_every_size(
    resolution: int, channels: int, num_classes: int
) -> None:
    cfg = _cfg(resolution, channels, num_classes)
    g, d = build_models(cfg, seed=0)
    assert isinstance(g, R3Generator) and isinstance(d, R3Discriminator)
    z = torch.randn(3, cfg.z_dim)
    y = torch.tensor([0, 1, 2]) if num_classes else None
    x = g(z, y)
    assert x.shape == (3, channels, resolution, resolution)
    logits = d(x, y)
    assert logits.shape == (3,)
    logits.sum().backward()
    for net in (g, d):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    # no normalisation layer anywhere
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in g.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in d.modules())


@pytest.mark.parametrize("resolution", SUPPORTED_RESOLUTIONS)
@pytest.mark.parametrize("channels", SUPPORTED_CHANNELS)
@pytest.mark.parametrize("num_classes", [0, 3])
def test_the_small_network_shapes_and_gradients_at_every_size(
    resolution: int, channels: int, num_classes: int
) -> None:
    """--recipe r3gan-small's networks (width 32, one block per stage, no expansion), with R1
    on D and G trained through D as rpgan does."""
    cfg = _cfg(resolution, channels, num_classes, blocks_per_stage=1, expansion=1)
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "g_width": 32, "d_width": 32})
    g, d = build_models(cfg, seed=0)
    for net in (g, d):
        blocks = [m for m in net.modules() if isinstance(m, ResidualBlock)]
        assert len(blocks) == cfg.num_upsamples + 1  # one per stage
        assert all(b.expand.out_channels == b.expand.in_channels for b in blocks)
    z = torch.randn(4, cfg.z_dim)
    y = torch.tensor([0, 1, 2, 0]) if num_classes else None
    x = g(z, y)
    assert x.shape == (4, channels, resolution, resolution)
    assert d(x, y).shape == (4,)
    loss = build_loss("rpgan", r1_gamma=0.1, r1_every=1)
    real = torch.rand(4, channels, resolution, resolution) * 2 - 1
    d_loss, stats = loss.d_objective(d, real, x.detach(), 0, y, y)
    d_loss.backward()
    assert stats["r1"] >= 0 and stats["r2"] >= 0
    loss.g_objective(d, x, y, real, y).backward()
    for net in (g, d):
        grads = [p.grad for p in net.parameters()]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_blocks_and_expansion_are_r3gan_knobs_that_old_configs_leave_as_they_were() -> None:
    default = _cfg(32, 3)
    assert (default.blocks_per_stage, default.expansion) == (2, 2)
    # configs written before the knobs lack them, and are written without them
    assert "blocks_per_stage" not in default.to_dict() and "expansion" not in default.to_dict()
    assert ModelConfig.from_dict(default.to_dict()) == default
    g, d = build_models(default, seed=0)
    blocks = [m for m in d.modules() if isinstance(m, ResidualBlock)]
    assert len(blocks) == 2 * 4 and blocks[0].expand.out_channels == 2 * 16
    # the default network is the one of before the knobs: the same tensors and initial weights
    # (measured on the code before them, seed 0, conditional on 3 classes)
    g, d = build_models(_cfg(32, 3, 3), seed=0)
    for net, tensors, numel, abs_sum in (
        (g, 59, 111891, 8750.370385847946),
        (d, 61, 95649, 5678.214731002935),
    ):
        sd = net.state_dict()
        assert (len(sd), sum(v.numel() for v in sd.values())) == (tensors, numel)
        assert float(sum(v.double().abs().sum() for v in sd.values())) == pytest.approx(
            abs_sum, rel=1e-6
        )
    small = _cfg(32, 3, blocks_per_stage=1, expansion=1)
    assert small.to_dict()["blocks_per_stage"] == 1 and small.to_dict()["expansion"] == 1
    assert ModelConfig.from_dict(small.to_dict()) == small
    assert sum(p.numel() for p in build_models(small)[1].parameters()) < sum(
        p.numel() for p in build_models(default)[1].parameters()
    )
    with pytest.raises(ConfigError, match="blocks_per_stage applies to arch 'r3gan' only"):
        ModelConfig(arch="dcgan", blocks_per_stage=1)
    with pytest.raises(ConfigError, match="expansion must be an integer"):
        _cfg(expansion=0)


def test_blocks_start_as_the_identity_and_outputs_stay_small() -> None:
    block = ResidualBlock(32, total_blocks=6)
    x = torch.randn(2, 32, 7, 7)
    assert torch.equal(block(x), x)
    g, d = build_models(_cfg(), seed=0)
    with torch.no_grad():
        images = g(torch.randn(256, 16))
        assert 0.05 < images.std().item() < 3.0  # neither dead nor exploding at init
        assert d(images).abs().max().item() < 100


def test_d_scores_each_image_alone() -> None:
    _, d = build_models(_cfg(32, 3), seed=0)
    d.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        together = d(x)
        alone = torch.cat([d(x[i : i + 1]) for i in range(5)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_same_seed_same_networks() -> None:
    g1, d1 = build_models(_cfg(), seed=3)
    g2, d2 = build_models(_cfg(), seed=3)
    for a, b in zip(
        list(g1.state_dict().values()) + list(d1.state_dict().values()),
        list(g2.state_dict().values()) + list(d2.state_dict().values()),
        strict=True,
    ):
        assert torch.equal(a, b)


def test_rpgan_losses_pair_real_with_fake() -> None:
    loss = build_loss("rpgan")
    real, fake = torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 1.0])
    assert loss.d_loss(real, fake).item() == pytest.approx(F.softplus(fake - real).mean().item())
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    x_real, x_fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    g_loss = loss.g_objective(d, x_fake, real=x_real)
    expected = F.softplus(d(x_real) - d(x_fake)).mean()
    assert g_loss.item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="pass real images"):
        loss.g_objective(d, x_fake)


def test_rpgan_adds_r1_and_r2_on_lazy_steps() -> None:
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    base, _ = build_loss("rpgan").d_objective(d, real, fake, d_iter=0)
    loss = build_loss("rpgan", r1_gamma=2.0, r1_every=1)
    total, stats = loss.d_objective(d, real, fake, d_iter=0)
    r1, r2 = gradient_penalty(d, real).item(), gradient_penalty(d, fake).item()
    assert stats["r1"] == pytest.approx(r1) and stats["r2"] == pytest.approx(r2)
    assert total.item() == pytest.approx(base.item() + 0.5 * 2.0 * (r1 + r2), rel=1e-5)


def test_a_few_steps_lower_each_loss_on_a_toy_set() -> None:
    """D learns to tell a fixed toy set from G's samples; then G learns to fool that D."""
    torch.manual_seed(0)
    cfg = _cfg()
    g, d = build_models(cfg, seed=0)
    loss = build_loss("rpgan", r1_gamma=0.1, r1_every=1)
    real = torch.zeros(16, 1, 28, 28)
    real[:, :, 8:20, 8:20] = 1.0  # squares
    z = torch.randn(16, cfg.z_dim)
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.99))
    with torch.no_grad():
        fake = g(z)
    first, _ = loss.d_objective(d, real, fake, 0)
    for i in range(15):
        value, _ = loss.d_objective(d, real, fake, i)
        opt_d.zero_grad()
        value.backward()
        opt_d.step()
    last, _ = loss.d_objective(d, real, fake, 0)
    assert last.item() < first.item()
    d.requires_grad_(False)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-3, betas=(0.0, 0.99))
    g_first = loss.g_objective(d, g(z), real=real).item()
    for _ in range(15):
        value = loss.g_objective(d, g(z), real=real)
        opt_g.zero_grad()
        value.backward()
        opt_g.step()
    assert loss.g_objective(d, g(z), real=real).item() < g_first
