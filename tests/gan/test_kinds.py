"""Model kinds in the checkpoint (gan, vae, ae, ebm) and how each makes images: which files a
checkpoint holds, old checkpoints loading as GANs, the ebm's bounded and seeded Langevin
search, and the D-guided methods refused where G or D is missing."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gan.checkpoint import (
    CheckpointError,
    build_config,
    copy_checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from gan.models import ModelConfig, build_models
from gan.samplers import (
    EBMSearch,
    MethodError,
    check_kind,
    parse_options,
    runs_gradients,
)
from gan.samplers.dispatch import Models, sample
from tests.conftest import make_checkpoint

FILES = {
    "gan": ["config.json", "discriminator.safetensors", "generator.safetensors"],
    "vae": ["config.json", "encoder.safetensors", "generator.safetensors"],
    "ae": ["config.json", "encoder.safetensors", "generator.safetensors"],
    "ebm": ["config.json", "discriminator.safetensors"],
}
SHORT = EBMSearch(steps=3, step_size=10.0, grad_clip=0.01, noise=0.005)


@pytest.mark.parametrize("kind", ["gan", "vae", "ae", "ebm"])
@pytest.mark.parametrize(("resolution", "channels"), [(28, 1), (32, 3)])
def test_each_kind_saves_its_networks_loads_and_samples(
    tmp_path: Path, kind: str, resolution: int, channels: int
) -> None:
    path = make_checkpoint(
        tmp_path / kind, kind=kind, resolution=resolution, channels=channels, width=4, ebm=SHORT
    )
    assert sorted(p.name for p in path.iterdir()) == FILES[kind]
    ck = load_checkpoint(path)
    assert ck.kind == kind and ck.config.format_version == (1 if kind == "gan" else 2)
    assert (ck.generator is None) == (kind == "ebm")
    assert (ck.discriminator is None) == (kind in ("vae", "ae"))
    assert (ck.encoder is None) == (kind in ("gan", "ebm"))
    if ck.encoder is not None:  # a vae's encoder gives (mu, logvar), a plain one a code
        mu, logvar = ck.encoder(torch.zeros(2, channels, resolution, resolution))
        assert mu.shape == (2, 8) and (logvar is None) == (kind == "ae")
    result = sample(Models.of(ck), parse_options("plain"), seed=5, n=3)
    assert result.images.shape == (3, channels, resolution, resolution)
    assert result.images.dtype == torch.uint8
    assert result.cost.discriminator_backwards == (9 if kind == "ebm" else 0)
    # A copy keeps every file and the hashes stay valid.
    copy = copy_checkpoint(path, tmp_path / "copy")
    assert sorted(p.name for p in copy.iterdir()) == FILES[kind]
    assert load_checkpoint(copy).checkpoint_hash == ck.checkpoint_hash


def test_a_checkpoint_without_kind_loads_as_gan_with_its_old_hash(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "old")
    raw = json.loads((path / "config.json").read_text())
    assert "kind" not in raw and raw["format_version"] == 1  # GANs are written as before
    ck = load_checkpoint(path)
    assert ck.kind == "gan" and ck.config.ebm is None
    # The checkpoint hash of a GAN is computed over G and D as in version 1.
    import hashlib

    h = hashlib.sha256()
    for name in ("generator.safetensors", "discriminator.safetensors"):
        h.update(name.encode())
        h.update(raw["files"][name]["sha256"].encode())
    assert ck.checkpoint_hash == h.hexdigest()[:16]


def test_kind_and_files_are_validated(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "ebm", kind="ebm")
    cfg = json.loads((path / "config.json").read_text())
    for change, message in (
        ({"kind": "diffusion"}, "'kind' must be one of gan, vae, ae, ebm"),
        ({"format_version": 1}, "kind 'ebm' needs format_version 2"),
        ({"ebm": {"steps": 0}}, "'ebm.steps' must be an integer"),
        ({"ebm": {"noise": -1}}, "'ebm.noise' must be a finite number"),
    ):
        (path / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(CheckpointError, match=message):
            read_checkpoint_config(path)
    (path / "config.json").write_text(json.dumps(cfg))
    (path / "discriminator.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"discriminator\.safetensors: missing"):
        load_checkpoint(path)
    mc = ModelConfig(z_dim=8, g_width=4, d_width=4)
    g, d = build_models(mc, seed=0)
    with pytest.raises(ValueError, match=r"an ebm checkpoint holds discriminator\.safetensors"):
        save_checkpoint(tmp_path / "bad", g, d, build_config(mc, step=0, kind="ebm"))


def test_d_guided_methods_are_refused_where_g_or_d_is_missing(tmp_path: Path) -> None:
    for kind in ("vae", "ae", "ebm"):
        models = Models.of(load_checkpoint(make_checkpoint(tmp_path / kind, kind=kind)))
        for method in ("drs", "mh", "langevin"):
            with pytest.raises(MethodError, match=f"method '{method}' needs"):
                sample(models, parse_options(method), seed=0, n=2)
    with pytest.raises(MethodError, match="this checkpoint is a vae"):
        check_kind("vae", "pixel_ascent")
    with pytest.raises(MethodError, match="ebm"):
        check_kind("ebm", "pixel_ascent", parse_options("pixel_ascent", {"start": "sample"}))
    check_kind("ebm", "pixel_ascent")  # from noise it needs D only
    ebm = Models.of(load_checkpoint(tmp_path / "ebm"))
    result = sample(ebm, parse_options("pixel_ascent", {"steps": 2}), seed=0, n=2)
    assert result.images.shape == (2, 1, 28, 28)
    assert runs_gradients("ebm", "plain") and not runs_gradients("gan", "plain")


def test_ebm_search_is_bounded_and_reproducible_per_seed(tmp_path: Path) -> None:
    path = make_checkpoint(tmp_path / "ebm", kind="ebm", ebm=SHORT)
    models = Models.of(load_checkpoint(path))
    plain = parse_options("plain")
    a = sample(models, plain, seed=11, n=4)
    b = sample(models, plain, seed=11, n=4, chunk=3)  # chunking changes no image
    assert torch.equal(a.images, b.images)
    alone = sample(models, plain, seed=13, n=1)  # image 2 of seed 11 has image seed 13
    assert torch.equal(alone.images[0], a.images[2])
    assert not torch.equal(sample(models, plain, seed=12, n=1).images[0], a.images[0])
    # Exactly steps D forward and backward passes per image, plus the two scoring forwards.
    assert a.cost.as_dict() == {
        "generator_forwards": 0,
        "discriminator_forwards": 4 * (3 + 2),
        "generator_backwards": 0,
        "discriminator_backwards": 4 * 3,
    }
    assert all(s.steps == 3 and s.logit_after is not None for s in a.stats)
    longer = replace(models, ebm=replace(SHORT, steps=6))
    assert sample(longer, plain, seed=11, n=1).cost.discriminator_backwards == 6
    with pytest.raises(MethodError, match=r"'ebm.steps' must be an integer in 1\.\.10000"):
        EBMSearch.from_config({"steps": 10_001})
