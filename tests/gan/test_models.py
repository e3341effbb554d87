from __future__ import annotations

import pytest
import torch

from gan.models import (
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
    [
        {"resolution": 48},
        {"channels": 2},
        {"arch": "resnet"},
        {"z_dim": 0},
        {"arch": "classic", "resolution": 28},
    ],
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
