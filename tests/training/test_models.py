from __future__ import annotations

import pytest
import torch

from training.losses import d_loss, g_loss, r1_penalty
from training.models import (
    ConfigError,
    ModelConfig,
    build_models,
    to_model_range,
    to_uint8,
)


@pytest.mark.parametrize("resolution", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_for_every_resolution_and_channel_count(resolution: int, channels: int) -> None:
    cfg = ModelConfig(resolution=resolution, channels=channels, z_dim=16, g_width=8, d_width=8)
    g, d = build_models(cfg, seed=0)
    x = g(torch.randn(3, 16))
    assert x.shape == (3, channels, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert d(x).shape == (3,)


def test_classic_baseline_shapes() -> None:
    cfg = ModelConfig(resolution=32, z_dim=100, arch="classic")
    g, d = build_models(cfg, seed=0)
    x = g(torch.randn(2, 100))
    assert x.shape == (2, 1, 32, 32)
    assert d(x).shape == (2,)


@pytest.mark.parametrize(
    "kwargs",
    [{"resolution": 48}, {"channels": 2}, {"arch": "resnet"}, {"z_dim": 0},
     {"arch": "classic", "resolution": 28}],
)
def test_invalid_configs_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(**kwargs)


def test_config_round_trip_and_unknown_keys() -> None:
    cfg = ModelConfig(resolution=64, channels=3)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown model config keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "depth": 3})


def test_eval_mode_outputs_do_not_depend_on_batch_composition() -> None:
    cfg = ModelConfig(z_dim=8, g_width=8, d_width=8)
    g, d = build_models(cfg, seed=1)
    g.eval()
    d.eval()
    z = torch.randn(6, 8)
    with torch.no_grad():
        alone = torch.cat([g(z[i : i + 1]) for i in range(6)])
        together = g(z)
        assert torch.allclose(alone, together, atol=1e-5)
        assert torch.allclose(
            torch.cat([d(together[i : i + 1]) for i in range(6)]), d(together), atol=1e-5
        )


def test_pixel_conversion_round_trip() -> None:
    pixels = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    x = to_model_range(pixels)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(to_uint8(x), pixels)


def test_losses_follow_the_gan_objectives() -> None:
    real, fake = torch.tensor([3.0]), torch.tensor([-3.0])
    # A confident, correct D has a small loss; G's non-saturating loss is then large.
    assert d_loss("nonsat", real, fake) < 0.1
    assert g_loss("nonsat", fake) > 2.9
    # minimax G loss = log(1 - D(G(z))), nearly flat (saturated) when D rejects the fake.
    z = torch.tensor([-3.0], requires_grad=True)
    g_loss("minimax", z).backward()
    z2 = torch.tensor([-3.0], requires_grad=True)
    g_loss("nonsat", z2).backward()
    assert abs(z.grad.item()) < abs(z2.grad.item()) / 10
    assert d_loss("hinge", real, fake) == 0
    with pytest.raises(ValueError):
        d_loss("wgan", real, fake)


def test_r1_penalty_is_zero_for_a_constant_discriminator() -> None:
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1))
    torch.nn.init.zeros_(d[1].weight)
    assert r1_penalty(lambda x: d(x).squeeze(1), torch.randn(2, 1, 2, 2)).item() == 0  # type: ignore[arg-type]
    torch.nn.init.ones_(d[1].weight)
    assert r1_penalty(lambda x: d(x).squeeze(1), torch.randn(2, 1, 2, 2)).item() == pytest.approx(4.0)  # type: ignore[arg-type]
