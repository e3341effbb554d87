"""POST /generate with interpolate: across classes (the ends are the two seeds' images), from an
explicit latent, as an animation (gif, webp), and the 422s of bad paths."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gan.io import animation_formats
from tests.service.conftest import ROOT, ClientFactory

BUNDLED = ROOT / "checkpoints" / "mnist"  # class-conditional, ten classes "0".."9"


@pytest.fixture
def mnist(make_client: ClientFactory) -> TestClient:
    return make_client(checkpoint=BUNDLED)


@pytest.fixture
def cond(make_client: ClientFactory, cond_ckpt_dir: Path) -> TestClient:
    return make_client(checkpoint=cond_ckpt_dir)


def _path(client: TestClient, **spec: Any) -> dict[str, Any]:
    extra = spec.pop("request", {})
    r = client.post("/generate", json={"interpolate": spec, "format": "json", **extra})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _pngs(body: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(im["png_base64"]) for im in body["images"]]


def _png(client: TestClient, **body: Any) -> bytes:
    r = client.post("/generate", json={**body, "format": "png"})
    assert r.status_code == 200, r.text
    return r.content


def test_ends_across_classes_are_the_two_seeds_images(mnist: TestClient) -> None:
    body = _path(mnist, from_seed=3, to_seed=8, steps=6)  # classes 3 and 8 by default
    assert body["interpolation"] == {
        "from_seed": 3,
        "to_seed": 8,
        "from_label": 3,
        "to_label": 8,
        "steps": 6,
        "method": "slerp",
    }
    pngs = _pngs(body)
    assert pngs[0] == _png(mnist, seed=3)
    assert pngs[-1] == _png(mnist, seed=8)
    assert [im["label"] for im in body["images"]] == [3, 3, 3, 8, 8, 8]  # the nearer end
    # A middle frame mixes the classes: it is neither class's image of its latent.
    mid = body["images"][2]
    assert pngs[2] != _png(mnist, z=[mid["latent"]], label=3)
    assert pngs[2] != _png(mnist, z=[mid["latent"]], label=8)
    # Named classes and explicit labels give the same path as the defaults.
    named = _path(mnist, from_seed=3, to_seed=8, steps=6, from_label="3", to_label=8)
    assert _pngs(named) == pngs


def test_chosen_classes_at_the_ends(mnist: TestClient) -> None:
    body = _path(mnist, from_seed=3, to_seed=8, steps=4, from_label=1, to_label="7")
    pngs = _pngs(body)
    assert pngs[0] == _png(mnist, seed=3, label=1)
    assert pngs[-1] == _png(mnist, seed=8, label=7)
    assert (body["interpolation"]["from_label"], body["interpolation"]["to_label"]) == (1, 7)


def test_the_same_class_at_both_ends_is_the_plain_label_path(mnist: TestClient) -> None:
    same = _path(mnist, from_seed=3, to_seed=8, steps=5, from_label=4, to_label=4)
    fixed = _path(mnist, from_seed=3, to_seed=8, steps=5, request={"label": 4})
    assert _pngs(same) == _pngs(fixed)
    assert [im["label"] for im in same["images"]] == [4] * 5
    assert fixed["interpolation"]["from_label"] is None  # label fixes every image's class
    for im, png in zip(same["images"], _pngs(same), strict=True):
        assert png == _png(mnist, z=[im["latent"]], label=4)
    # Two seeds of one class (13 mod 10 = 3): one class all along, as before.
    default = _path(mnist, from_seed=3, to_seed=13, steps=3)
    assert [im["label"] for im in default["images"]] == [3, 3, 3]
    for im, png in zip(default["images"], _pngs(default), strict=True):
        assert png == _png(mnist, z=[im["latent"]], label=3)


def test_an_explicit_latent_at_either_end(mnist: TestClient) -> None:
    z_dim = mnist.get("/info").json()["z_dim"]
    z = [((-1) ** j) * 0.01 * j for j in range(z_dim)]
    body = _path(mnist, from_z=z, to_seed=8, from_label=2, steps=4)
    assert body["interpolation"]["from_seed"] is None
    pngs = _pngs(body)
    assert pngs[0] == _png(mnist, z=[z], label=2)
    assert pngs[-1] == _png(mnist, seed=8)
    assert body["images"][0]["latent"] == pytest.approx(z, abs=1e-7)
    back = _path(mnist, from_seed=8, to_z=z, to_label=2, steps=4)
    assert _pngs(back) == pngs[::-1]


def _frames(data: bytes) -> list[tuple[np.ndarray, int]]:
    img = Image.open(io.BytesIO(data))
    assert img.info.get("loop") == 0  # forever
    frames = []
    for k in range(img.n_frames):
        img.seek(k)
        img.load()
        frames.append((np.asarray(img.convert("L")), int(img.info["duration"])))
    return frames


@pytest.mark.parametrize("fmt", animation_formats())
def test_the_path_as_an_animation(mnist: TestClient, fmt: str) -> None:
    spec = {"from_seed": 3, "to_seed": 8, "steps": 7}
    r = mnist.post("/generate", json={"interpolate": {**spec, "frame_ms": 80}, "format": fmt})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"image/{fmt}"
    assert r.headers["X-Frame-Ms"] == "80" and r.headers["X-Image-Count"] == "7"
    frames = _frames(r.content)
    assert len(frames) == 7 and {d for _, d in frames} == {80}
    pngs = _pngs(_path(mnist, **spec))
    for (pixels, _), png in zip(frames, pngs, strict=True):  # grey frames: exact pixels
        assert np.array_equal(pixels, np.asarray(Image.open(io.BytesIO(png))))
    default = mnist.post("/generate", json={"interpolate": spec, "format": fmt})
    assert {d for _, d in _frames(default.content)} == {100}


def test_info_lists_the_formats(mnist: TestClient) -> None:
    gen = mnist.get("/info").json()["generate"]
    assert gen["formats"] == ["png", "grid", "json", *animation_formats()]
    assert gen["animated_formats"] == list(animation_formats())


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    return dict(detail[0])


@pytest.mark.parametrize(
    ("body", "loc", "phrase"),
    [
        ({"format": "gif"}, ["format"], "valid only with interpolate"),
        ({"n": 4, "seed": 1, "format": "gif"}, ["format"], "valid only with interpolate"),
        ({"interpolate": {"from_z": [0.0] * 7, "to_seed": 1}}, ["interpolate", "from_z"], "z_dim"),
        ({"interpolate": {"from_seed": 1, "to_z": [0.0] * 9}}, ["interpolate", "to_z"], "z_dim"),
        (
            {"interpolate": {"from_seed": 1, "from_z": [0.0] * 8, "to_seed": 2}},
            ["interpolate", "from_z"],
            "not both",
        ),
        ({"interpolate": {"to_seed": 2}}, ["interpolate", "from_seed"], "from_z"),
        (
            {"interpolate": {"from_seed": 1, "to_z": [1e9] + [0.0] * 7}},
            ["interpolate", "to_z", 0],
            "less than or equal to",
        ),
        (
            {"interpolate": {"from_z": [0.0] * 8, "to_z": [0.0] * 8}, "truncation": 0.5},
            ["truncation"],
            "used as given",
        ),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2, "frame_ms": 80}},
            ["interpolate", "frame_ms"],
            "format gif",
        ),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2, "frame_ms": 5}, "format": "gif"},
            ["interpolate", "frame_ms"],
            "greater than or equal to 20",
        ),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2, "from_label": 0}},
            ["interpolate", "from_label"],
            "unconditional",
        ),
    ],
)
def test_bad_paths_get_a_422_naming_the_field(
    client: TestClient, body: dict[str, Any], loc: list[str | int], phrase: str
) -> None:
    err = _error(client.post("/generate", json=body))
    assert err["loc"] == ["body", *loc] and phrase in err["msg"], err


def test_non_finite_latents_are_refused(client: TestClient) -> None:
    body = '{"interpolate": {"from_seed": 1, "to_z": [NaN, 0, 0, 0, 0, 0, 0, 0]}}'
    r = client.post("/generate", content=body, headers={"content-type": "application/json"})
    err = _error(r)
    assert err["loc"][:3] == ["body", "interpolate", "to_z"], err


@pytest.mark.parametrize(
    ("spec", "extra", "loc", "phrase"),
    [
        ({"from_label": 3}, {}, "from_label", "unknown class 3"),
        ({"to_label": "three"}, {}, "to_label", "unknown class 'three'"),
        ({"from_label": 1}, {"label": 2}, "from_label", "not both"),
        ({"from_z": [0.0] * 8, "from_seed": None}, {}, "from_label", "give from_label"),
    ],
)
def test_bad_classes_get_a_422(
    cond: TestClient, spec: dict[str, Any], extra: dict[str, Any], loc: str, phrase: str
) -> None:
    path = {"from_seed": 1, "to_seed": 2, **spec}
    err = _error(cond.post("/generate", json={"interpolate": path, **extra}))
    assert err["loc"] == ["body", "interpolate", loc] and phrase in err["msg"], err


def test_an_unconditional_model_interpolates_seeds_and_latents(client: TestClient) -> None:
    body = _path(client, from_seed=3, to_z=[0.5] * 8, steps=3)
    assert body["interpolation"]["from_label"] is None
    assert [im["label"] for im in body["images"]] == [None] * 3
    pngs = _pngs(body)
    assert pngs[0] == _png(client, seed=3)
    assert pngs[-1] == _png(client, z=[[0.5] * 8])
    gif = client.post(
        "/generate",
        json={"interpolate": {"from_seed": 3, "to_seed": 4, "steps": 3}, "format": "gif"},
    )
    assert gif.status_code == 200 and gif.headers["content-type"] == "image/gif"


def test_a_batch_mixing_plain_labels_and_class_mixes(cond_ckpt_dir: Path) -> None:
    """Rows of different requests share a forward: plain-labelled rows and a path's class
    mixes run together, and each gets what it gets alone."""
    import torch

    from gan.classmix import ClassMix
    from service.batching import GENERATOR
    from service.inference import InferenceEngine

    engine = InferenceEngine.load(cond_ckpt_dir)
    try:
        z = torch.randn(5, engine.z_dim, generator=torch.Generator().manual_seed(0))
        plain = torch.tensor([2, 0])
        mix = ClassMix.between(0, 1, [0.0, 0.5, 1.0])
        together = engine._run_batch(GENERATOR, [(z[:2], plain), (z[2:], mix)])
        assert torch.equal(together[:2], engine._run_batch(GENERATOR, [(z[:2], plain)]))
        assert torch.equal(together[2:], engine._run_batch(GENERATOR, [(z[2:], mix)]))
        assert torch.equal(together[2], engine._run_batch(GENERATOR, [(z[2:3], plain[1:])])[0])
    finally:
        engine.close()
