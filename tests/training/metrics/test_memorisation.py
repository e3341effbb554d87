"""The memorisation check: a generator that copies training images has a ratio near 0, one
that does not near 1 or above; the closest pairs are written as a PNG."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from training.metrics.anyfeatures import RandomFeatures
from training.metrics.memorisation import closest_pairs_grid, memorisation, nearest


def _real(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    # smooth random blobs: images of one distribution, none a copy of another
    low = torch.rand(n, 3, 4, 4, generator=gen)
    return (torch.nn.functional.interpolate(low, size=16, mode="bilinear") * 255).to(torch.uint8)


def test_nearest_matches_the_full_distance_matrix() -> None:
    q, p = torch.randn(37, 5), torch.randn(101, 5)
    d, i = nearest(q, p, chunk=4)
    full = torch.cdist(q, p)
    assert torch.allclose(d, full.min(1).values, atol=1e-5)
    assert torch.equal(i, full.argmin(1))


def test_copies_have_a_ratio_near_zero_and_new_images_near_one(tmp_path: Path) -> None:
    train, held = _real(300, 0), _real(60, 1)
    copies = train[torch.arange(60) * 5]
    fresh = _real(60, 2)  # the same distribution, never trained on
    net = RandomFeatures()

    def spaces(
        generated: torch.Tensor,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        f = lambda x: torch.from_numpy(net.features(x)).float()  # noqa: E731
        return {"random_cnn": (f(generated), f(train), f(held))}

    copied, index = memorisation(copies, train, held, features=spaces(copies))
    assert copied["pixels"]["ratio"] < 0.01 and copied["random_cnn"]["ratio"] < 0.01
    assert torch.equal(index, torch.arange(60) * 5)
    honest, _ = memorisation(fresh, train, held, features=spaces(fresh))
    assert 0.7 < honest["pixels"]["ratio"] < 1.5 and honest["random_cnn"]["ratio"] > 0.5

    png = closest_pairs_grid(copies, train, index, tmp_path / "pairs.png")
    with Image.open(png) as grid:
        assert grid.size == (2 + 8 * 18, 2 + 4 * 18)  # 16 pairs, 4 a row
        arr = torch.from_numpy(__import__("numpy").asarray(grid.convert("RGB")).copy())
    # each pair: the generated image equals its nearest training image (a copy)
    left, right = arr[2:18, 2:18], arr[2:18, 20:36]
    assert torch.equal(left, right)


def test_gan_eval_reports_memorisation_in_json_and_writes_the_pairs(tmp_path: Path) -> None:
    import json

    from tests.conftest import make_checkpoint
    from training.cli import eval_main

    ckpt = make_checkpoint(tmp_path / "ckpt", dataset="mnist")
    out = tmp_path / "eval.json"
    args = ["--checkpoint", str(ckpt), "--num", "40", "--batch-size", "20", "--quiet"]
    assert eval_main([*args, "--json", str(out)]) == 0
    mem = json.loads(out.read_text())["memorisation"]
    assert mem["num_generated"] == 40 and mem["num_train"] == 60000
    assert mem["pixels"]["ratio"] > 0.5  # an untrained G copies nothing
    assert "classifier_features" in mem
    assert Path(mem["closest_pairs_png"]).is_file()
    assert (tmp_path / "eval.pairs.png").is_file()
