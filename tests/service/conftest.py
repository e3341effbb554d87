"""Fixtures for the service tests: tiny checkpoints built in tmp_path, apps and clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from training.checkpoint import build_config, save_checkpoint
from training.models import ModelConfig, build_models

# Levels 0, 0.001, ..., 1 with quantiles rising linearly from -4 to 4: percentile(x) is exact
# to check by hand (logit 0 -> 50 %).
REAL_SCORES: dict[str, Any] = {
    "levels": [i / 1000 for i in range(1001)],
    "quantiles": [-4.0 + 8.0 * i / 1000 for i in range(1001)],
    "num_images": 1000,
    "source": "synthetic test quantiles",
}


def make_checkpoint(
    path: Path,
    *,
    resolution: int = 28,
    channels: int = 1,
    z_dim: int = 8,
    real_scores: dict[str, Any] | None = REAL_SCORES,
    seed: int = 0,
) -> Path:
    """A tiny, randomly initialised checkpoint (widths 4) written with save_checkpoint."""
    cfg = ModelConfig(resolution=resolution, channels=channels, z_dim=z_dim, g_width=4, d_width=4)
    g, d = build_models(cfg, seed=seed)
    config = build_config(
        cfg,
        step=123,
        seed=seed,
        dataset={"name": "tiny"},
        metrics={"fid": 99.5},
        real_scores=real_scores,
    )
    return save_checkpoint(path, g, d, config)


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def rgb_ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny-rgb", resolution=32, channels=3, real_scores=None
    )


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(ckpt_dir: Path) -> Iterator[ClientFactory]:
    """``make_client(**settings)``: a started TestClient (lifespan run) for these settings."""
    clients: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        overrides.setdefault("checkpoint", ckpt_dir)
        client = TestClient(create_app(Settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read GAN_* variables: keep the caller's environment out of the tests."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("GAN_"):
            monkeypatch.delenv(key)
