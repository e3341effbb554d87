"""Class-conditional G and D (projection D), labels in sampling, classes in checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gan.checkpoint import CheckpointError, load_checkpoint, update_config
from gan.models import ConfigError, ModelConfig, build_models
from gan.sampling import LabelError, class_labels, resolve_label, sample, score
from tests.conftest import make_checkpoint


@pytest.mark.parametrize("resolution", [28, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_conditional_shapes_at_every_size(resolution: int, channels: int) -> None:
    cfg = ModelConfig(
        resolution=resolution, channels=channels, z_dim=8, g_width=8, d_width=8, num_classes=5
    )
    g, d = build_models(cfg, seed=0)
    y = torch.tensor([0, 4, 2])
    x = g(torch.randn(3, 8), y)
    assert x.shape == (3, channels, resolution, resolution)
    assert d(x, y).shape == (3,)
    with pytest.raises(ValueError, match="class-conditional"):
        g(torch.randn(3, 8))
    with pytest.raises(ValueError, match="class-conditional"):
        d(x)


def test_projection_d_scores_the_pair() -> None:
    cfg = ModelConfig(z_dim=8, g_width=8, d_width=8, num_classes=3)
    g, d = build_models(cfg, seed=0)
    assert d.embed is not None
    torch.nn.init.normal_(d.embed.weight, 0, 1.0)
    g.eval()
    d.eval()
    x = g(torch.randn(1, 8), torch.tensor([0])).repeat(3, 1, 1, 1)
    logits = d(x, torch.tensor([0, 1, 2]))
    assert len(set(logits.tolist())) == 3  # same image, three classes, three scores


def test_model_config_checks_num_classes() -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        ModelConfig(num_classes=1)
    with pytest.raises(ConfigError, match="unconditional only"):
        ModelConfig(resolution=32, arch="classic", num_classes=10)
    assert not ModelConfig().conditional and ModelConfig(num_classes=10).conditional
    # Unconditional networks keep exactly the parameters of older checkpoints.
    g, d = build_models(ModelConfig(), seed=0)
    assert not any("embed" in k for k in [*g.state_dict(), *d.state_dict()])


def test_labels_from_seeds_names_and_indices() -> None:
    classes = ("zero", "one", "two")
    assert class_labels([5, 6, 7], 3).tolist() == [2, 0, 1]  # seed mod K
    assert class_labels([5, 6], 3, 1).tolist() == [1, 1]
    assert class_labels([5, 6], 3, [2, 0]).tolist() == [2, 0]
    assert class_labels([5, 6], 0) is None
    with pytest.raises(LabelError, match="unconditional"):
        class_labels([5], 0, 1)
    with pytest.raises(LabelError, match="2 labels for 3 images"):
        class_labels([1, 2, 3], 3, [0, 1])
    assert resolve_label("two", classes) == 2 and resolve_label(1, classes) == 1
    assert resolve_label("0", classes) == 0
    for bad in (3, -1, "three", "7"):
        with pytest.raises(LabelError, match="0='zero', 1='one', 2='two'"):
            resolve_label(bad, classes)
    with pytest.raises(LabelError, match="unconditional"):
        resolve_label(0, ())


def test_sampling_is_reproducible_and_follows_the_labels() -> None:
    cfg = ModelConfig(z_dim=8, g_width=8, d_width=8, num_classes=4)
    g, d = build_models(cfg, seed=1)
    g.eval()
    d.eval()
    a = sample(g, 8, seed=10, n=6, num_classes=4)
    b = sample(g, 8, seed=10, n=6, num_classes=4)
    assert torch.equal(a, b)
    # Image i of seed 10 has class (10 + i) mod 4; asking for those labels gives the same images.
    same = sample(g, 8, seed=10, n=6, num_classes=4, labels=[2, 3, 0, 1, 2, 3])
    assert torch.equal(a, same)
    other = sample(g, 8, seed=10, n=6, num_classes=4, labels=0)
    assert not torch.equal(a, other)
    assert score(d, a, torch.tensor([2, 3, 0, 1, 2, 3])).shape == (6,)


def test_classes_travel_in_the_checkpoint(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "c", classes=["cat", "dog"])
    loaded = load_checkpoint(ckpt)
    assert loaded.config.classes == ("cat", "dog") and loaded.model_config.num_classes == 2
    update_config(ckpt, {"classes": ["cat"]})
    with pytest.raises(CheckpointError, match="names 1 classes but the model has num_classes = 2"):
        load_checkpoint(ckpt)


def test_checkpoints_written_before_classes_existed_still_load(tmp_path: Path) -> None:
    ckpt = make_checkpoint(tmp_path / "old")
    cfg_file = ckpt / "config.json"
    cfg = json.loads(cfg_file.read_text())
    del cfg["classes"]  # as written before class-conditional models
    cfg_file.write_text(json.dumps(cfg))
    ck = load_checkpoint(ckpt)
    assert ck.config.classes == () and not ck.model_config.conditional
