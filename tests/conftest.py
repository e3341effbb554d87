"""Shared fixtures: tiny checkpoints built in tmp_path, the shared MNIST folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from gan.checkpoint import build_config, save_checkpoint
from gan.models import (
    KINDS_WITH_DISCRIMINATOR,
    KINDS_WITH_ENCODER,
    KINDS_WITH_GENERATOR,
    ModelConfig,
    build_encoder,
    build_models,
    init_weights,
)
from gan.samplers import EBMSearch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def _few_threads() -> None:
    # The CI machine has 2 cores; tests are small, so one thread avoids oversubscription.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dataset caches go to $XDG_CACHE_HOME: a temporary one, never the user's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    env = os.environ.get("GAN_DATA_DIR")
    path = Path(env) if env else ROOT.parent / "shared" / "data" / "mnist"
    if (
        not (path / "train-images-idx3-ubyte.gz").is_file()
        and not (path / "train-images-idx3-ubyte").is_file()
    ):
        pytest.fail(f"MNIST not found at {path}; set GAN_DATA_DIR")
    return path


def make_checkpoint(
    path: Path,
    *,
    resolution: int = 28,
    channels: int = 1,
    z_dim: int = 8,
    width: int = 8,
    step: int = 0,
    seed: int = 0,
    dataset: str = "tiny-test",
    metrics: dict[str, Any] | None = None,
    real_scores: dict[str, Any] | None = None,
    classes: list[str] | None = None,
    kind: str = "gan",
    ebm: EBMSearch | None = None,
) -> Path:
    """A tiny, randomly initialised checkpoint written with save_checkpoint (the one helper
    every test package builds its checkpoints with); ``kind`` gan, vae, ae or ebm."""
    cfg = ModelConfig(
        resolution=resolution,
        channels=channels,
        z_dim=z_dim,
        g_width=width,
        d_width=width,
        num_classes=len(classes or []),
    )
    g, d = build_models(cfg, seed=seed)
    encoder = None
    if kind in KINDS_WITH_ENCODER:
        encoder = build_encoder(cfg, variational=kind == "vae")
        init_weights(encoder)
    config = build_config(
        cfg,
        step=step,
        seed=seed,
        dataset={"name": dataset},
        metrics=metrics,
        real_scores=real_scores if kind in KINDS_WITH_DISCRIMINATOR else None,
        classes=classes,
        kind=kind,
        ebm=ebm,
    )
    return save_checkpoint(
        path,
        g.eval() if kind in KINDS_WITH_GENERATOR else None,
        d.eval() if kind in KINDS_WITH_DISCRIMINATOR else None,
        config,
        encoder=None if encoder is None else encoder.eval(),
    )


@pytest.fixture()
def tiny_checkpoint(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "ckpt")
