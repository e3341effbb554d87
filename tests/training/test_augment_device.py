"""--augment (DiffAugment), --device and --precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gan.checkpoint import load_checkpoint
from gan.models import ModelConfig
from training.augment import POLICIES, color, cutout, diff_augment, parse_policies, translation
from training.config import TrainConfig, TrainingError
from training.data import ImageData
from training.loop import Trainer


def test_augment_is_off_by_default_and_differentiable() -> None:
    assert TrainConfig().augment == "none"
    x = (torch.rand(4, 3, 16, 16) * 2 - 1).requires_grad_(True)
    out = diff_augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert POLICIES == ("color", "translation", "cutout")


def test_each_policy_does_what_it_says() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.zeros(8, 1, 16, 16)
    shifted = translation(torch.ones(8, 1, 16, 16), gen)
    assert (shifted == -1).any() and (shifted == 1).any()  # black fill where shifted in
    cut = cutout(torch.ones(8, 1, 16, 16), gen)
    assert ((cut == 0).flatten(1).sum(1) > 0).all()  # every image has a square at 0
    assert not torch.equal(color(x, gen), x)
    # The same generator state gives the same augmentation: runs stay reproducible.
    a = diff_augment(x + 0.5, torch.Generator().manual_seed(3))
    b = diff_augment(x + 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_augment_policies_choose_the_operations(tmp_path: Path) -> None:
    """--augment-policies: a subset, applied in the fixed order; a bad list is one clear error;
    a config written before the option (no key) keeps all three, as it trained."""
    assert parse_policies("translation, color") == ("color", "translation")
    for bad in ("", "cutout,blur", "color,color"):
        with pytest.raises(ValueError, match="--augment-policies takes"):
            parse_policies(bad)
    with pytest.raises(TrainingError, match="--augment-policies"):
        TrainConfig(augment_policies="zoom")
    old = TrainConfig().to_dict()
    del old["augment_policies"]
    assert TrainConfig.from_dict(old).augment_policies == "color,translation,cutout"
    # The trainer applies exactly the chosen ones: translation alone fills with black (-1) and
    # never cuts a mid-grey (0) square, which the full set does.
    white = torch.ones(16, 1, 28, 28)
    kw = {"augment": "diff", "batch_size": 8, "model": ModelConfig(z_dim=8, g_width=4, d_width=4)}
    only = Trainer(TrainConfig(**kw, augment_policies="translation"), _data(), tmp_path / "a")
    out = only.augment(white)
    assert (out == -1).any() and not (out == 0).any() and set(out.unique().tolist()) <= {-1, 1}
    full = Trainer(TrainConfig(**kw), _data(), tmp_path / "b")
    assert (full.augment(white) == 0).any()


def _data() -> ImageData:
    gen = torch.Generator().manual_seed(0)
    return ImageData(
        torch.randint(0, 256, (32, 1, 28, 28), generator=gen, dtype=torch.uint8),
        None,
        {"name": "random-test"},
    )


def _cfg(**kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        steps=3,
        batch_size=8,
        checkpoint_every=3,
        sample_every=100,
        log_every=1,
        model=ModelConfig(z_dim=8, g_width=4, d_width=4),
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


def test_augmented_training_runs_and_changes_the_result(tmp_path: Path) -> None:
    plain = load_checkpoint(Trainer(_cfg(), _data(), tmp_path / "a", progress=False).fit())
    aug = load_checkpoint(
        Trainer(_cfg(augment=True), _data(), tmp_path / "b", progress=False).fit()
    )
    again = load_checkpoint(
        Trainer(_cfg(augment=True), _data(), tmp_path / "c", progress=False).fit()
    )
    key = "head.weight"
    assert not torch.equal(
        plain.discriminator.state_dict()[key], aug.discriminator.state_dict()[key]
    )
    assert torch.equal(aug.discriminator.state_dict()[key], again.discriminator.state_dict()[key])


def test_devices_and_precisions_are_checked(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="no CUDA GPU is available"):
            Trainer(_cfg(device="cuda"), _data(), tmp_path, progress=False)
    with pytest.raises(TrainingError, match="GPU autocast"):
        Trainer(_cfg(device="cpu", precision="bf16"), _data(), tmp_path, progress=False)
    with pytest.raises(TrainingError, match="--device must be"):
        TrainConfig(device="tpu")
    t = Trainer(_cfg(device="auto"), _data(), tmp_path, progress=False)
    assert t.device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_a_device_trained_checkpoint_loads_on_the_cpu_identically(tmp_path: Path) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ckpt = Trainer(_cfg(device=device), _data(), tmp_path / "r", progress=False).fit()
    on_cpu = load_checkpoint(ckpt, device="cpu")
    moved = load_checkpoint(ckpt, device=device)
    for a, b in ((on_cpu.generator, moved.generator), (on_cpu.discriminator, moved.discriminator)):
        for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert va.device.type == "cpu" and torch.equal(va, vb.cpu()), k


def test_tensorboard_event_files(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(_cfg(tensorboard=True, sample_every=3), _data(), tmp_path / "r", progress=False).fit()
    acc = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    acc.Reload()
    assert {"d_loss", "g_loss"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("g_loss")] == [1, 2, 3]
    assert "samples" in acc.Tags()["images"]
