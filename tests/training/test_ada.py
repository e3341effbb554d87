"""ADA: p rises when D overfits (its real logits are all positive) and falls otherwise."""

from __future__ import annotations

import torch

from training.augment import AdaptiveAugment


def test_p_moves_up_when_d_overfits_and_down_otherwise() -> None:
    ada = AdaptiveAugment(target=0.6, interval=4, speed_images=1_000)
    for _ in range(40):  # D says "real" to every real image: r_t = 1
        ada.observe(torch.full((32,), 3.0))
    assert ada.r_t == 1.0
    high = ada.p
    assert high > 0.9
    for _ in range(40):  # D is unsure: half the real images on each side, r_t = 0
        ada.observe(torch.tensor([1.0, -1.0] * 16))
    assert ada.r_t == 0.0
    assert ada.p < high and ada.p == 0.0


def test_p_adjusts_by_the_images_seen() -> None:
    ada = AdaptiveAugment(target=0.6, interval=2, speed_images=640)
    ada.observe(torch.ones(32))
    assert ada.p == 0.0  # only every `interval` D steps
    ada.observe(torch.ones(32))
    assert ada.p == 64 / 640


def test_a_tiny_set_memorised_by_d_raises_p() -> None:
    """A real D on 8 images: trained to tell them from noise, its real logits turn positive and
    ADA's p goes up."""
    torch.manual_seed(0)
    d = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1), torch.nn.Flatten(0))
    real = torch.rand(8, 1, 8, 8) * 2 - 1
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    ada = AdaptiveAugment(interval=1, speed_images=200)
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        fake = torch.randn(8, 1, 8, 8)
        r, f = d(ada(real, gen)), d(ada(fake, gen))
        ada.observe(r)
        loss = torch.nn.functional.softplus(-r).mean() + torch.nn.functional.softplus(f).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert ada.p > 0.3 and ada.r_t > 0.6


def test_augment_is_identity_at_p0_differentiable_and_reproducible() -> None:
    x = torch.rand(6, 3, 16, 16, requires_grad=True)
    gen = torch.Generator().manual_seed(1)
    assert AdaptiveAugment(p=0.0)(x, gen) is x
    ada = AdaptiveAugment(p=0.7, xflip=True)
    out = ada(x, torch.Generator().manual_seed(2))
    assert out.shape == x.shape and not torch.equal(out, x)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    again = ada(x.detach(), torch.Generator().manual_seed(2))
    assert torch.equal(again, out.detach())
    ada2 = AdaptiveAugment()
    ada2.load_state_dict(ada.state_dict())
    assert ada2.state_dict() == ada.state_dict()
