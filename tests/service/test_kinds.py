"""The service on every model kind: a vae, an ae and an ebm checkpoint load and serve
/generate; /score answers 422 where there is no D; /info reports the kind; the ebm's Langevin
search is capped (422) and reproducible per seed; D-guided methods are refused with a 422."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gan.checkpoint import load_checkpoint
from gan.kinds import model_kind
from gan.samplers import EBMSearch, parse_options
from gan.samplers.dispatch import Models, sample
from tests.service.conftest import ClientFactory, make_checkpoint

SEARCH = EBMSearch(steps=4, step_size=10.0, grad_clip=0.01, noise=0.005)


@pytest.fixture(scope="module")
def kinds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("kinds")
    out = {k: make_checkpoint(root / k, kind=k, ebm=SEARCH) for k in ("vae", "ae", "ebm")}
    out["ebm-rgb"] = make_checkpoint(
        root / "ebm-rgb", kind="ebm", ebm=SEARCH, resolution=32, channels=3, real_scores=None
    )
    out["vae-rgb"] = make_checkpoint(root / "vae-rgb", kind="vae", resolution=32, channels=3)
    return out


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("kind", ["vae", "ae", "ebm", "ebm-rgb", "vae-rgb"])
def test_each_kind_serves_generate_and_reports_its_kind(
    make_client: ClientFactory, kinds: dict[str, Path], kind: str
) -> None:
    client = make_client(checkpoint=kinds[kind])
    info = client.get("/info").json()
    assert info["kind"] == kind.split("-")[0]
    r = client.post("/generate", json={"seed": 3, "n": 2, "format": "json"})
    assert r.status_code == 200, r.text
    body = r.json()
    want = sample(Models.of(load_checkpoint(kinds[kind])), parse_options("plain"), seed=3, n=2)
    for i, image in enumerate(body["images"]):
        pixels = _png(base64.b64decode(image["png_base64"]))
        expected = want.images[i].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(
            pixels, expected[..., 0] if expected.shape[2] == 1 else expected
        )
    if kind.startswith("ebm"):  # the search: steps D backward passes per image, no latent
        assert body["sampling"]["cost"]["discriminator_backwards"] == 2 * SEARCH.steps
        assert body["sampling"]["cost"]["generator_forwards"] == 0
        assert body["images"][0]["latent"] is None and body["images"][0]["steps"] == SEARCH.steps
        assert info["generate"]["ebm_search"]["steps"] == SEARCH.steps
    else:
        assert body["sampling"]["cost"]["generator_forwards"] == 2


@pytest.mark.parametrize("kind", ["vae", "ae"])
def test_score_without_a_discriminator_is_a_422_that_says_why(
    make_client: ClientFactory, kinds: dict[str, Path], kind: str
) -> None:
    client = make_client(checkpoint=kinds[kind])
    png = client.post("/generate", json={"seed": 1}).content
    r = client.post("/score", files={"files": ("a.png", png, "image/png")})
    assert r.status_code == 422
    assert f"this checkpoint is a {kind}" in r.text and "no discriminator" in r.text
    methods = {m["name"]: m for m in client.get("/info").json()["generate"]["methods"]}
    assert methods["plain"]["available"] and not methods["langevin"]["available"]
    assert "needs a discriminator" in methods["pixel_ascent"]["unavailable_reason"]


def test_ebm_scores_and_refuses_what_needs_g(
    make_client: ClientFactory, kinds: dict[str, Path]
) -> None:
    client = make_client(checkpoint=kinds["ebm"])
    png = client.post("/generate", json={"seed": 1}).content
    r = client.post("/score", files={"files": ("a.png", png, "image/png")})
    assert r.status_code == 200 and r.json()["results"][0]["realness_percentile"] is not None
    for method in ("drs", "mh", "langevin"):
        r = client.post("/generate", json={"seed": 1, "method": method})
        assert r.status_code == 422 and "ebm (D alone)" in r.text, r.text
    r = client.post("/generate", json={"z": [[0.0] * 8]})
    assert r.status_code == 422 and "it has no latents" in r.text
    r = client.post("/generate", json={"seed": 1, "truncation": 0.5})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "truncation"]
    r = client.post("/generate", json={"interpolate": {"from_seed": 1, "to_seed": 2, "steps": 3}})
    assert r.status_code == 422 and "give seed and n" in r.text
    r = client.post(
        "/generate", json={"seed": 1, "method": "pixel_ascent", "method_options": {"steps": 2}}
    )
    assert r.status_code == 200


def test_vae_refuses_d_guided_methods(make_client: ClientFactory, kinds: dict[str, Path]) -> None:
    client = make_client(checkpoint=kinds["vae"])
    for method in ("drs", "mh", "langevin", "pixel_ascent"):
        r = client.post("/generate", json={"seed": 1, "method": method})
        assert r.status_code == 422 and "needs a discriminator" in r.text, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "method"]
    r = client.post("/generate", json={"z": [[0.0] * 8], "format": "json"})
    assert r.status_code == 200  # a decoder takes explicit latents like any G


def test_ebm_search_is_capped_and_the_same_per_seed(
    make_client: ClientFactory, kinds: dict[str, Path]
) -> None:
    capped = make_client(checkpoint=kinds["ebm"], max_langevin_steps=SEARCH.steps - 1)
    r = capped.post("/generate", json={"seed": 1})
    assert r.status_code == 422
    assert "GAN_MAX_LANGEVIN_STEPS" in r.text and f"{SEARCH.steps} steps" in r.text
    client = make_client(checkpoint=kinds["ebm"], max_batch=2)  # gradient jobs in chunks of 2
    grid = client.post("/generate", json={"seed": 20, "n": 5, "format": "json"}).json()
    alone = client.post("/generate", json={"seed": 23})
    assert alone.status_code == 200
    assert base64.b64decode(grid["images"][3]["png_base64"]) == alone.content


BUNDLED = Path(__file__).resolve().parents[2] / "checkpoints"


@pytest.mark.parametrize(
    ("name", "kind"), [("mnist-gan-small", "gan"), ("mnist-vae", "vae"), ("mnist-ebm", "ebm")]
)
def test_bundled_small_checkpoints_of_each_kind_serve(
    make_client: ClientFactory, name: str, kind: str
) -> None:
    """The three checkpoints docs/lecture.md tells `make serve` users to try
    (GAN_CHECKPOINT=checkpoints/mnist-ebm ...) load and serve as their kind."""
    client = make_client(checkpoint=BUNDLED / name)
    assert client.get("/info").json()["kind"] == kind
    r = client.post("/generate", json={"seed": 1, "n": 2, "format": "json"})
    assert r.status_code == 200, r.text
    assert len(r.json()["images"]) == 2
    png = base64.b64decode(r.json()["images"][0]["png_base64"])
    score = client.post("/score", files=[("files", ("a.png", png, "image/png"))])
    if kind == "vae":
        assert score.status_code == 422 and "no discriminator" in score.text.lower()
    else:
        assert score.status_code == 200, score.text


@pytest.mark.parametrize("kind", ["vae", "ae", "ebm"])
def test_info_capabilities_are_the_kinds_declaration(
    make_client: ClientFactory, kinds: dict[str, Path], kind: str
) -> None:
    info = make_client(checkpoint=kinds[kind]).get("/info").json()
    assert info["capabilities"] == model_kind(kind).capabilities()
    assert info["capabilities"]["score"] == (kind == "ebm")
    assert info["capabilities"]["interpolate"] == (kind != "ebm")
