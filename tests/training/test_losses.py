"""training.losses: the objectives and the registry."""

from __future__ import annotations

import pytest
import torch

from training.losses import LOSSES, GANLoss, build_loss, gradient_penalty


def test_losses_follow_the_gan_objectives() -> None:
    real, fake = torch.tensor([3.0]), torch.tensor([-3.0])
    # A confident, correct D has a small loss; G's non-saturating loss is then large.
    assert build_loss("nonsat").d_loss(real, fake) < 0.1
    assert build_loss("nonsat").g_loss(fake) > 2.9
    # minimax G loss = log(1 - D(G(z))), nearly flat (saturated) when D rejects the fake.
    z = torch.tensor([-3.0], requires_grad=True)
    build_loss("minimax").g_loss(z).backward()
    z2 = torch.tensor([-3.0], requires_grad=True)
    build_loss("nonsat").g_loss(z2).backward()
    assert abs(z.grad.item()) < abs(z2.grad.item()) / 10
    assert build_loss("hinge").d_loss(real, fake) == 0
    with pytest.raises(ValueError):
        build_loss("wgan")


def test_gradient_penalty_is_zero_for_a_constant_discriminator() -> None:
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1))
    torch.nn.init.zeros_(d[1].weight)
    assert gradient_penalty(lambda x: d(x).squeeze(1), torch.randn(2, 1, 2, 2)).item() == 0  # type: ignore[arg-type]
    torch.nn.init.ones_(d[1].weight)
    assert gradient_penalty(
        lambda x: d(x).squeeze(1), torch.randn(2, 1, 2, 2)
    ).item() == pytest.approx(4.0)  # type: ignore[arg-type]


def test_registry_offers_every_loss_to_the_cli() -> None:
    from training.config import TrainConfig

    assert set(LOSSES) == {"nonsat", "minimax", "hinge", "rpgan"}
    assert all(issubclass(cls, GANLoss) for cls in LOSSES.values())
    for name in LOSSES:
        assert TrainConfig(loss=name).loss == name


def test_d_objective_adds_lazy_r1_on_its_steps_only() -> None:
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 1), torch.nn.Flatten(0))
    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    plain = build_loss("nonsat")
    base, stats = plain.d_objective(d, real, fake, d_iter=0)
    assert "r1" not in stats and 0.0 < stats["d_real"] < 1.0
    lazy = build_loss("nonsat", r1_gamma=10.0, r1_every=4)
    on, on_stats = lazy.d_objective(d, real, fake, d_iter=4)
    off, off_stats = lazy.d_objective(d, real, fake, d_iter=5)
    assert "r1" in on_stats and "r1" not in off_stats
    assert torch.equal(off, base)
    assert on.item() == pytest.approx(base.item() + 0.5 * 10.0 * 4 * on_stats["r1"], rel=1e-6)
