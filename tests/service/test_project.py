"""POST /project: round trip through /generate (bytes), the label search, reproducibility per
seed, caps and bad input (4xx JSON), other kinds, and the optional encoder."""

from __future__ import annotations

import base64
import io
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image

from gan.checkpoint import add_encoder, load_checkpoint
from gan.io import encode_png
from gan.models import build_latent_encoder
from tests.service.conftest import ClientFactory, make_checkpoint


def _png(value: int = 200, size: int = 28, channels: int = 1) -> bytes:
    img = torch.zeros(size, size, dtype=torch.uint8)
    img[6:22, 12:16] = value  # a bar, like a "1"
    arr = img.numpy() if channels == 1 else img.unsqueeze(-1).repeat(1, 1, 3).numpy()
    return encode_png(arr)


def _project(client, data: dict[str, str] | None = None, png: bytes | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        "/project", files={"file": ("digit.png", png or _png(), "image/png")}, data=data or {}
    )


def test_projection_round_trips_through_generate_byte_for_byte(client) -> None:  # type: ignore[no-untyped-def]
    r = _project(client, {"steps": "20", "restarts": "2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["z"]) == client.get("/info").json()["z_dim"]
    assert body["label"] is None and body["class_name"] is None
    assert body["steps"] == 20 and body["restarts"] == 2 and body["start"] == "random"
    assert 0.0 <= body["mse"] <= 1.0
    assert body["distance_name"] == "discriminator-features" and body["distance"] >= 0
    for key in ("upload", "reconstruction"):
        assert isinstance(body[key]["logit"], float)
        assert 0.0 <= body[key]["realness_percentile"] <= 100.0
    image = base64.b64decode(body["image"])
    again = client.post("/generate", json={"z": [body["z"]], "format": "png"})
    assert again.status_code == 200
    assert again.content == image
    assert r.headers["X-Model-Id"] == body["model"]["model_id"]


def test_projection_lowers_the_pixel_error_with_steps(client) -> None:  # type: ignore[no-untyped-def]
    start = _project(client, {"steps": "0", "restarts": "1"}).json()["mse"]
    after = _project(client, {"steps": "60", "restarts": "1"}).json()["mse"]
    assert after < start


def test_projection_is_reproducible_per_seed(client) -> None:  # type: ignore[no-untyped-def]
    a = _project(client, {"steps": "5", "seed": "7"}).json()
    b = _project(client, {"steps": "5", "seed": "7"}).json()
    c = _project(client, {"steps": "5", "seed": "8"}).json()
    assert a["z"] == b["z"] and a["image"] == b["image"]
    assert a["z"] != c["z"]


def test_conditional_projection_searches_the_class(
    make_client: ClientFactory, cond_ckpt_dir: Path
) -> None:
    client = make_client(checkpoint=cond_ckpt_dir)
    body = _project(client, {"steps": "10", "restarts": "1"}).json()
    assert body["candidates"] == [0, 1, 2]  # no encoder: every class
    assert body["label"] in (0, 1, 2)
    assert body["class_name"] == ["zero", "one", "two"][body["label"]]
    again = client.post(
        "/generate", json={"z": [body["z"]], "label": body["label"], "format": "png"}
    )
    assert again.content == base64.b64decode(body["image"])
    given = _project(client, {"steps": "10", "label": "two"}).json()
    assert given["candidates"] == [2] and given["label"] == 2


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"steps": "100000"}, "GAN_MAX_PROJECT_STEPS"),
        ({"steps": "ten"}, "integer"),
        ({"restarts": "0"}, "restarts"),
        ({"restarts": "99"}, "GAN_MAX_PROJECT_RESTARTS"),
        ({"seed": "-1"}, "seed"),
        ({"label": "3"}, "unconditional"),
    ],
)
def test_bad_options_are_422_json(client, data: dict[str, str], needle: str) -> None:  # type: ignore[no-untyped-def]
    r = _project(client, data)
    assert r.status_code == 422, r.text
    assert needle in str(r.json()["detail"])


def test_bad_uploads_are_4xx_json(make_client: ClientFactory) -> None:
    client = make_client(max_image_pixels=1000)
    r = client.post("/project", files={"file": ("x.png", b"not an image", "image/png")})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", "file"] and error["msg"].startswith("file ('x.png'): ")
    big = io.BytesIO()
    Image.new("L", (100, 100)).save(big, format="PNG")
    r = client.post("/project", files={"file": ("big.png", big.getvalue(), "image/png")})
    assert r.status_code == 422 and "pixels" in str(r.json()["detail"])
    r = client.post("/project", files={"other": ("a.png", _png(), "image/png")})
    assert r.status_code == 422 and "'file'" in str(r.json()["detail"])
    r = client.post("/project", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 415
    r = client.post("/project", content=_png(), headers={"content-type": "image/png"})
    assert r.status_code == 200  # a raw body works too, options as query parameters


def test_an_oversized_body_is_413(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=10_000)
    r = client.post("/project", files={"file": ("a.png", b"\0" * 50_000, "image/png")})
    assert r.status_code == 413 and "detail" in r.json()


def test_other_kinds(make_client: ClientFactory, tmp_path: Path) -> None:
    ebm = make_client(checkpoint=make_checkpoint(tmp_path / "ebm", kind="ebm"))
    r = _project(ebm)
    assert r.status_code == 422 and "projected" in str(r.json()["detail"])
    vae = make_client(checkpoint=make_checkpoint(tmp_path / "vae", kind="vae"))
    body = _project(vae, {"steps": "5"}).json()
    assert body["start"] == "encoder" and body["distance_name"] == "encoder-features"
    assert body["upload"]["logit"] is None and body["reconstruction"]["logit"] is None
    again = vae.post("/generate", json={"z": [body["z"]], "format": "png"})
    assert again.content == base64.b64decode(body["image"])


def test_an_added_encoder_starts_the_projection_and_keeps_the_model_id(
    make_client: ClientFactory, cond_ckpt_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "with-encoder"
    shutil.copytree(cond_ckpt_dir, path)
    before = load_checkpoint(path)
    encoder = build_latent_encoder(before.model_config, seed=1)
    add_encoder(path, encoder, {"trained_on": "test"})
    after = load_checkpoint(path)
    assert after.model_id == before.model_id and after.encoder is not None
    client = make_client(checkpoint=path)
    body = _project(client, {"steps": "3"}).json()
    assert body["start"] == "encoder"
    assert len(body["candidates"]) == 3  # the encoder's top 3 of 3 classes
    info = client.get("/info").json()
    assert info["model"]["model_id"] == before.model_id
    assert info["project"]["encoder"] is True and info["project"]["candidate_classes"] == 3
