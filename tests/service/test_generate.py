"""POST /generate: formats, reproducibility, truncation, interpolation, and bad parameters."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gan.checkpoint import load_checkpoint
from gan.latents import SEED_LIMIT, image_seeds, seed_latent
from gan.models import to_uint8
from service.app import create_app
from service.settings import Settings
from tests.service.conftest import ClientFactory


def png_pixels(data: bytes) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img)


def decode_json_images(body: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(im["png_base64"]) for im in body["images"]]


def test_png_default_is_one_image_with_model_headers(client: TestClient) -> None:
    r = client.post("/generate", json={"seed": 5})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert png_pixels(r.content).shape == (28, 28)
    info = client.get("/info").json()["model"]
    assert r.headers["X-Model-Id"] == info["model_id"]
    assert r.headers["X-Model-Step"] == str(info["step"])
    assert r.headers["X-Checkpoint-Hash"] == info["checkpoint_hash"]
    assert r.headers["X-Seed"] == "5"
    assert r.headers["X-Image-Count"] == "1"


def test_png_matches_the_generator_on_the_seed_latent(client: TestClient, ckpt_dir: Path) -> None:
    r = client.post("/generate", json={"seed": 11, "format": "png"})
    c = load_checkpoint(ckpt_dir)
    with torch.no_grad():
        want = to_uint8(c.generator(seed_latent(11, c.model_config.z_dim)[None]))[0, 0].numpy()
    assert np.array_equal(png_pixels(r.content), want)


def test_same_seed_same_bytes_across_restarts(ckpt_dir: Path) -> None:
    outputs = []
    for _ in range(2):
        with TestClient(create_app(Settings(checkpoint=ckpt_dir))) as c:
            outputs.append(
                c.post("/generate", json={"seed": 1234, "n": 3, "format": "grid"}).content
            )
            outputs.append(c.post("/generate", json={"seed": 1234}).content)
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]


def test_random_seed_is_reported_and_reproduces(client: TestClient) -> None:
    r1 = client.post("/generate", json={})
    seed = int(r1.headers["X-Seed"])
    assert 0 <= seed < 2**32
    r2 = client.post("/generate", json={"seed": seed})
    assert r2.content == r1.content
    body = client.post("/generate", json={"n": 2, "format": "json"}).json()
    assert body["seed"] is not None
    assert [im["seed"] for im in body["images"]] == image_seeds(body["seed"], 2)


def test_json_images_reproduce_alone_by_seed_and_by_latent(client: TestClient) -> None:
    body = client.post("/generate", json={"n": 4, "seed": 99, "format": "json"}).json()
    assert body["seed"] == 99 and (body["width"], body["height"], body["channels"]) == (28, 28, 1)
    assert body["model"] == client.get("/info").json()["model"]
    pngs = decode_json_images(body)
    for i, im in enumerate(body["images"]):
        assert im["index"] == i and im["seed"] == 99 + i and len(im["latent"]) == 8
        alone = client.post("/generate", json={"seed": im["seed"], "n": 1, "format": "png"})
        assert alone.content == pngs[i]
        by_z = client.post("/generate", json={"z": [im["latent"]], "format": "png"})
        assert by_z.content == pngs[i]
        assert "X-Seed" not in by_z.headers


def test_seed_derivation_wraps_at_the_seed_limit(client: TestClient) -> None:
    body = client.post("/generate", json={"n": 2, "seed": SEED_LIMIT - 1, "format": "json"}).json()
    assert [im["seed"] for im in body["images"]] == [SEED_LIMIT - 1, 0]


def test_grid_layout(client: TestClient) -> None:
    r = client.post("/generate", json={"n": 5, "seed": 3, "format": "grid"})
    assert r.headers["content-type"] == "image/png"
    assert r.headers["X-Grid-Columns"] == "3" and r.headers["X-Image-Count"] == "5"
    grid = png_pixels(r.content)
    assert grid.shape == (2 + 2 * 30, 2 + 3 * 30)  # 2 rows x 3 columns of 28 px + 2 px padding
    singles = decode_json_images(
        client.post("/generate", json={"n": 5, "seed": 3, "format": "json"}).json()
    )
    for i, data in enumerate(singles):
        row, col = divmod(i, 3)
        y, x = 2 + row * 30, 2 + col * 30
        assert np.array_equal(grid[y : y + 28, x : x + 28], png_pixels(data))


def test_several_images_default_to_grid(client: TestClient) -> None:
    r = client.post("/generate", json={"n": 4, "seed": 1})
    assert r.headers["content-type"] == "image/png" and r.headers["X-Grid-Columns"] == "2"


def test_rgb_model_png_and_grid(make_client: ClientFactory, rgb_ckpt_dir: Path) -> None:
    client = make_client(checkpoint=rgb_ckpt_dir)
    assert png_pixels(client.post("/generate", json={"seed": 1}).content).shape == (32, 32, 3)
    grid = png_pixels(client.post("/generate", json={"n": 2, "seed": 1, "format": "grid"}).content)
    assert grid.shape == (2 + 34, 2 + 2 * 34, 3)


def test_truncation_resamples_out_of_range_components(client: TestClient) -> None:
    plain = client.post("/generate", json={"n": 8, "seed": 7, "format": "json"}).json()
    cut = client.post(
        "/generate", json={"n": 8, "seed": 7, "format": "json", "truncation": 0.5}
    ).json()
    assert cut["truncation"] == 0.5 and cut["truncation_mode"] == "resample"
    for a, b in zip(plain["images"], cut["images"], strict=True):
        za, zb = np.array(a["latent"]), np.array(b["latent"])
        assert np.all(np.abs(zb) <= 0.5)
        inside = np.abs(za) <= 0.5
        assert np.array_equal(za[inside], zb[inside])  # components within the bound are kept
    assert any(np.any(np.abs(np.array(im["latent"])) > 0.5) for im in plain["images"])
    # A bound no component reaches changes nothing.
    wide = client.post(
        "/generate", json={"n": 8, "seed": 7, "format": "json", "truncation": 10}
    ).json()
    assert [im["latent"] for im in wide["images"]] == [im["latent"] for im in plain["images"]]
    # Truncated images reproduce alone too.
    single = client.post("/generate", json={"seed": 9, "truncation": 0.5}).content
    assert single == decode_json_images(cut)[2]


def test_interpolation_path(client: TestClient) -> None:
    body = client.post(
        "/generate",
        json={"interpolate": {"from_seed": 3, "to_seed": 4, "steps": 5}, "format": "json"},
    ).json()
    assert body["interpolation"] == {
        "from_seed": 3,
        "to_seed": 4,
        "from_label": None,
        "to_label": None,
        "steps": 5,
        "method": "slerp",
    }
    assert [im["t"] for im in body["images"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert all(im["seed"] is None for im in body["images"])
    pngs = decode_json_images(body)
    assert pngs[0] == client.post("/generate", json={"seed": 3}).content
    assert pngs[-1] == client.post("/generate", json={"seed": 4}).content
    z0, z1 = (np.array(body["images"][k]["latent"]) for k in (0, -1))
    mid = np.array(body["images"][2]["latent"])
    omega = np.arccos(z0 @ z1 / np.linalg.norm(z0) / np.linalg.norm(z1))
    assert mid == pytest.approx((z0 + z1) * np.sin(omega / 2) / np.sin(omega), abs=1e-5)
    grid = client.post(
        "/generate", json={"interpolate": {"from_seed": 3, "to_seed": 4, "steps": 5}}
    )
    assert grid.headers["content-type"] == "image/png" and grid.headers["X-Image-Count"] == "5"


def test_engine_output_does_not_depend_on_batch_composition(client: TestClient) -> None:
    many = decode_json_images(
        client.post("/generate", json={"n": 16, "seed": 500, "format": "json"}).json()
    )
    for i in (0, 7, 15):
        assert client.post("/generate", json={"seed": 500 + i}).content == many[i]


def _error(r: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    return dict(detail[0])


@pytest.mark.parametrize(
    ("payload", "loc", "phrase"),
    [
        ({"n": 65}, ["body", "n"], "at most 64"),
        ({"n": 0}, ["body", "n"], "greater than or equal to 1"),
        ({"n": "many"}, ["body", "n"], "integer"),
        ({"n": 3, "format": "png"}, ["body", "format"], "exactly one image"),
        ({"format": "bmp"}, ["body", "format"], "'png', 'grid', 'json', 'gif'"),
        ({"format": "gif"}, ["body", "format"], "valid only with interpolate"),
        ({"seed": -1}, ["body", "seed"], "greater than or equal to 0"),
        ({"seed": 2**53}, ["body", "seed"], "less than"),
        ({"truncation": 0.0}, ["body", "truncation"], "greater than or equal to 0.05"),
        ({"truncation": 11}, ["body", "truncation"], "less than or equal to 10"),
        ({"z": [[0.0] * 8, [0.0] * 7]}, ["body", "z", 1], "z_dim = 8"),
        ({"z": [[0.0] * 8], "seed": 1}, ["body", "seed"], "either seed or z"),
        ({"z": [[0.0] * 8], "truncation": 1.0}, ["body", "truncation"], "used as given"),
        ({"z": [[0.0] * 8] * 2, "n": 3, "format": "json"}, ["body", "n"], "z has 2 rows"),
        ({"z": [[0.0] * 8] * 2, "format": "png"}, ["body", "format"], "exactly one image"),
        ({"z": []}, ["body", "z"], "empty"),
        ({"z": [[0.0] * 8] * 65}, ["body", "z"], "at most 64"),
        ({"z": [[1e9] * 8]}, ["body", "z", 0, 0], "less than or equal to"),
        ({"z": [0.0] * 8}, ["body", "z", 0], "list"),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2, "steps": 65}},
            ["body", "interpolate", "steps"],
            "at most 64",
        ),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2, "steps": 1}},
            ["body", "interpolate", "steps"],
            "greater than or equal to 2",
        ),
        ({"interpolate": {"from_seed": 1}}, ["body", "interpolate", "to_seed"], "required"),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2}, "seed": 4},
            ["body", "interpolate"],
            "remove seed",
        ),
        (
            {"interpolate": {"from_seed": 1, "to_seed": 2}, "format": "png"},
            ["body", "format"],
            "exactly one image",
        ),
        ({"colour": "red"}, ["body", "colour"], "Extra inputs are not permitted"),
    ],
)
def test_bad_parameters_name_the_field(
    client: TestClient, payload: dict[str, Any], loc: list[Any], phrase: str
) -> None:
    err = _error(client.post("/generate", json=payload))
    assert err["loc"] == loc
    assert phrase in err["msg"]
    assert "input" not in err  # large inputs are not echoed back


def test_non_finite_latent_values_are_refused(client: TestClient) -> None:
    body = '{"z": [[NaN, 0, 0, 0, 0, 0, 0, Infinity]], "format": "json"}'
    err = _error(
        client.post("/generate", content=body, headers={"Content-Type": "application/json"})
    )
    assert err["loc"][:3] == ["body", "z", 0]


def test_limit_follows_settings(make_client: ClientFactory) -> None:
    client = make_client(max_images=3)
    assert client.post("/generate", json={"n": 3, "format": "grid"}).status_code == 200
    assert "at most 3" in _error(client.post("/generate", json={"n": 4, "format": "grid"}))["msg"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("{not json", "application/json"),
        ("n=1", "application/x-www-form-urlencoded"),
    ],
)
def test_bad_bodies_are_4xx(client: TestClient, content: str, content_type: str) -> None:
    r = client.post("/generate", content=content, headers={"Content-Type": content_type})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


@pytest.mark.parametrize("content_type", [None, "application/json"])
def test_no_body_at_all_is_the_empty_request(client: TestClient, content_type: str | None) -> None:
    """Every field is optional, so an empty body means {}: one PNG from a random seed."""
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/generate", content=b"", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png" and r.headers["X-Image-Count"] == "1"
    seed = int(r.headers["X-Seed"])
    assert r.content == client.post("/generate", json={"seed": seed}).content
    assert client.post("/generate").status_code == 200  # curl -X POST .../generate


def test_json_body_is_valid_json_with_model(client: TestClient) -> None:
    r = client.post("/generate", json={"n": 2, "seed": 1, "format": "json"})
    assert r.headers["content-type"] == "application/json"
    assert r.headers["X-Model-Id"] == json.loads(r.content)["model"]["model_id"]
