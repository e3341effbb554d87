"""Class-conditional checkpoints at the API: labels on /generate and /score, classes in /info."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gan.checkpoint import load_checkpoint
from gan.io import encode_png, to_hwc
from gan.sampling import sample
from tests.service import imagefiles as F
from tests.service.conftest import ClientFactory


@pytest.fixture
def cond(make_client: ClientFactory, cond_ckpt_dir: Path) -> TestClient:
    return make_client(checkpoint=cond_ckpt_dir)


def _images(body: dict) -> list[dict]:  # type: ignore[type-arg]
    return body["images"]  # type: ignore[no-any-return]


def test_info_lists_the_classes(cond: TestClient, client: TestClient) -> None:
    assert cond.get("/info").json()["classes"] == ["zero", "one", "two"]
    assert client.get("/info").json()["classes"] == []


def test_unlabelled_requests_draw_seed_mod_k_reproducibly(
    cond: TestClient, cond_ckpt_dir: Path
) -> None:
    r = cond.post("/generate", json={"n": 4, "seed": 7, "format": "json"})
    assert r.status_code == 200, r.text
    imgs = _images(r.json())
    assert [i["label"] for i in imgs] == [1, 2, 0, 1]  # seeds 7..10 mod 3
    assert [i["class_name"] for i in imgs] == ["one", "two", "zero", "one"]
    # Same pixels as the core sampler (gan-sample, gan-eval) for the same seeds.
    ck = load_checkpoint(cond_ckpt_dir)
    expected = sample(ck.generator, ck.model_config.z_dim, seed=7, n=4, num_classes=3)
    for img, px in zip(imgs, to_hwc(expected), strict=True):
        assert base64.b64decode(img["png_base64"]) == encode_png(px)
    again = cond.post("/generate", json={"n": 4, "seed": 7, "format": "json"}).json()
    assert _images(again) == imgs


def test_one_label_a_name_or_a_list(cond: TestClient) -> None:
    by_index = cond.post("/generate", json={"n": 3, "seed": 1, "label": 2, "format": "json"})
    by_name = cond.post("/generate", json={"n": 3, "seed": 1, "label": "two", "format": "json"})
    assert by_index.status_code == by_name.status_code == 200
    assert [i["label"] for i in _images(by_index.json())] == [2, 2, 2]
    assert _images(by_index.json()) == _images(by_name.json())
    listed = cond.post(
        "/generate", json={"n": 3, "seed": 1, "label": ["zero", 1, "2"], "format": "json"}
    )
    assert [i["label"] for i in _images(listed.json())] == [0, 1, 2]
    one = cond.post("/generate", json={"seed": 3, "label": "two", "format": "png"})
    third = _images(by_index.json())[2]  # seed 3 with label 2
    assert one.content == base64.b64decode(third["png_base64"])


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        ({"n": 2, "label": "three"}, "unknown class 'three'; give an index or a name: 0='zero'"),
        ({"n": 2, "label": 5}, "unknown class 5"),
        ({"n": 3, "label": [0, 1]}, "label has 2 entries for 3 images"),
        ({"z": [[0.0] * 8]}, "give label"),
    ],
)
def test_bad_labels_get_a_422_naming_the_classes(cond: TestClient, body: dict, phrase: str) -> None:  # type: ignore[type-arg]
    r = cond.post("/generate", json=body)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "label"] and phrase in err["msg"]


def test_explicit_z_and_interpolation_with_labels(cond: TestClient) -> None:
    r = cond.post("/generate", json={"z": [[0.1] * 8, [0.2] * 8], "label": "one", "format": "json"})
    assert [i["label"] for i in _images(r.json())] == [1, 1]
    path = cond.post(
        "/generate",
        json={"interpolate": {"from_seed": 4, "to_seed": 9, "steps": 3}, "format": "json"},
    )
    # from_seed 4 mod 3 to to_seed 9 mod 3, the nearer end's class (tests/service/test_interpolate)
    assert [i["label"] for i in _images(path.json())] == [1, 0, 0]
    assert path.json()["interpolation"]["from_label"] == 1


def test_unconditional_model_refuses_a_label(client: TestClient) -> None:
    r = client.post("/generate", json={"n": 1, "label": 0})
    assert r.status_code == 422 and "unconditional" in r.json()["detail"][0]["msg"]
    imgs = _images(client.post("/generate", json={"n": 2, "format": "json"}).json())
    assert [i["label"] for i in imgs] == [None, None]
    r = client.post(
        "/score?label=1", files=[("files", ("a.png", F.GOOD["gray_png"](), "image/png"))]
    )
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "label"]


def test_score_with_and_without_a_label(cond: TestClient) -> None:
    png = F.GOOD["gray_png"]()
    files = [("files", ("a.png", png, "image/png")), ("files", ("b.png", png, "image/png"))]
    every = cond.post("/score", files=files)
    assert every.status_code == 200, every.text
    # No encoder: D is no classifier, so no class; the logit is D's highest over the classes.
    for res in every.json()["results"]:
        logits = res["class_logits"]
        assert len(logits) == 3 and res["label"] is None and res["class_name"] is None
        assert res["logit"] == max(logits) and res["class_source"] is None
    assert any("no encoder to read the class" in n for n in every.json()["notes"])
    as_two = cond.post("/score?label=two", files=files).json()["results"]
    assert [r["label"] for r in as_two] == [2, 2] and as_two[0]["class_logits"] is None
    assert as_two[0]["class_source"] == "request" and as_two[0]["class_probability"] is None
    assert as_two[0]["logit"] == pytest.approx(
        every.json()["results"][0]["class_logits"][2], abs=1e-5
    )
    bad = cond.post("/score?label=nine", files=files)
    assert bad.status_code == 422 and "unknown class 'nine'" in bad.json()["detail"][0]["msg"]


def test_score_reads_the_class_with_the_encoder(
    make_client: ClientFactory, cond_ckpt_dir: Path, tmp_path: Path
) -> None:
    """With an encoder the class of an unlabelled image is the encoder's reading, and D scores
    the image as that class."""
    import shutil

    import torch

    from gan.checkpoint import add_encoder
    from gan.models import build_latent_encoder, to_model_range

    path = tmp_path / "with-encoder"
    shutil.copytree(cond_ckpt_dir, path)
    ck = load_checkpoint(path)
    encoder = build_latent_encoder(ck.model_config, seed=3)
    add_encoder(path, encoder, {"trained_on": "test"})
    client = make_client(checkpoint=path)
    images = sample(
        ck.generator, ck.model_config.z_dim, seed=0, n=4, num_classes=3, labels=[0, 1, 2, 0]
    )
    files = [
        ("files", (f"{i}.png", encode_png(im), "image/png")) for i, im in enumerate(to_hwc(images))
    ]
    body = client.post("/score", files=files).json()
    encoder = load_checkpoint(path).encoder
    assert encoder is not None
    with torch.inference_mode():
        probs = encoder.eval()(to_model_range(images))[1].softmax(1)
    for res, p in zip(body["results"], probs, strict=True):
        assert res["class_source"] == "encoder"
        assert res["label"] == int(p.argmax())
        assert res["class_name"] == ["zero", "one", "two"][res["label"]]
        assert res["class_probability"] == pytest.approx(float(p.max()), abs=1e-5)
        assert res["logit"] == pytest.approx(res["class_logits"][res["label"]], abs=1e-6)
    assert not any("no encoder" in n for n in body["notes"])


def test_bundled_model_reads_real_digits_classes(
    make_client: ClientFactory, mnist_dir: Path
) -> None:
    """The complaint of issue 19: without a label /score named the true digit of 0 of 50 real
    test digits (D's best class). The bundled encoder reads them (96 % of all 10,000)."""
    from training.mnist import load_mnist

    client = make_client(checkpoint=Path(__file__).resolve().parents[2] / "checkpoints" / "mnist")
    test = load_mnist(mnist_dir, split="test")
    n = 50
    files = [
        ("files", (f"{i}.png", encode_png(im), "image/png"))
        for i, im in enumerate(to_hwc(test.images[:n]))
    ]
    right = 0
    for first in range(0, n, 10):  # GAN_MAX_IMAGES is 16 by default in tests
        body = client.post("/score", files=files[first : first + 10]).json()
        right += sum(r["label"] == int(test.labels[first + r["index"]]) for r in body["results"])
    assert right >= 0.9 * n, right
