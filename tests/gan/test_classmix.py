"""ClassMix: a conditional G's class embedding between two classes, exact at the ends."""

from __future__ import annotations

import pytest
import torch

from gan.classmix import ClassMix, embed_classes
from gan.models import ModelConfig, build_generator
from gan.sampling import generate


def _generator(arch: str) -> torch.nn.Module:
    cfg = ModelConfig(resolution=28, z_dim=8, g_width=8, d_width=8, num_classes=3, arch=arch)
    torch.manual_seed(0)
    g = build_generator(cfg)
    return g.eval()


def test_embedding_mix_is_exact_at_the_ends_and_linear_between() -> None:
    torch.manual_seed(1)
    embed = torch.nn.Embedding(4, 16)
    a, b = torch.tensor([0, 0, 0, 2]), torch.tensor([3, 3, 3, 2])
    t = torch.tensor([0.0, 1.0, 0.25, 0.7])
    out = embed_classes(embed, ClassMix(a, b, t))
    w = embed.weight.detach()
    assert torch.equal(out[0], w[0]) and torch.equal(out[1], w[3])
    assert torch.equal(out[3], w[2])  # a == b: that class exactly, whatever t
    assert torch.allclose(out[2], 0.75 * w[0] + 0.25 * w[3])
    assert torch.equal(embed_classes(embed, a), embed(a))  # plain labels unchanged


@pytest.mark.parametrize("arch", ["dcgan", "r3gan"])
def test_generator_ends_are_bitwise_the_plain_labels(arch: str) -> None:
    g = _generator(arch)
    z = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    weights = [0.0, 0.25, 0.5, 0.75, 1.0]
    mixed = generate(g, z, ClassMix.between(0, 2, weights))
    assert torch.equal(mixed[0], generate(g, z[:1], torch.tensor([0]))[0])
    assert torch.equal(mixed[-1], generate(g, z[-1:], torch.tensor([2]))[0])
    plain_mid = generate(g, z[2:3], torch.tensor([0]))[0]
    assert not torch.equal(mixed[2], plain_mid)  # the middle really mixes the classes
    # The same class at both ends is the plain label, bit for bit, all along the path.
    same = generate(g, z, ClassMix.between(1, 1, weights))
    assert torch.equal(same, generate(g, z, torch.full((5,), 1)))


def test_mixes_slice_and_concatenate_with_plain_labels() -> None:
    mix = ClassMix.between(0, 2, [0.0, 0.5, 1.0])
    assert len(mix) == 3 and tuple(mix.shape) == (3,) and (mix.min(), mix.max()) == (0, 2)
    part = mix[1:]
    assert part.a.tolist() == [0, 0] and part.t.tolist() == [0.5, 1.0]
    both = ClassMix.cat([torch.tensor([1, 2]), mix])
    assert both.a.tolist() == [1, 2, 0, 0, 0] and both.b.tolist() == [1, 2, 2, 2, 2]
    assert both.t.tolist() == [0.0, 0.0, 0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="one shape"):
        ClassMix(torch.tensor([0]), torch.tensor([0, 1]), torch.tensor([0.0]))
