"""POST /score: uploads, conversion through training.preprocess, D in one batch, bad input."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gan.checkpoint import load_checkpoint
from gan.models import to_model_range
from gan.preprocess import PREPROCESS_STEPS, preprocess_description, to_model_pixels
from tests.service import imagefiles as F
from tests.service.conftest import REAL_SCORES, ClientFactory


def expected_logits(ckpt: Path, files: list[bytes]) -> list[float]:
    """D's logits computed without the service: PIL decode + to_model_pixels + D."""
    c = load_checkpoint(ckpt)
    mc = c.model_config
    px = [to_model_pixels(Image.open(io.BytesIO(b)), mc.resolution, mc.channels) for b in files]
    with torch.no_grad():
        return c.discriminator(to_model_range(torch.from_numpy(np.stack(px)))).tolist()


def multipart(*files: bytes, names: list[str] | None = None) -> list[tuple[str, Any]]:
    names = names or [f"img{i}.png" for i in range(len(files))]
    return [
        ("files", (name, data, "application/octet-stream"))
        for name, data in zip(names, files, strict=True)
    ]


def test_multipart_scores_match_training_preprocessing(client: TestClient, ckpt_dir: Path) -> None:
    files = [F.GOOD["rgba_png"](), F.GOOD["cmyk_jpeg"](), F.GOOD["png16_gray"]()]
    r = client.post("/score", files=multipart(*files, names=["a.png", "b.jpg", "c.png"]))
    assert r.status_code == 200, r.text
    body = r.json()
    want = expected_logits(ckpt_dir, files)
    got = [res["logit"] for res in body["results"]]
    assert got == pytest.approx(want, abs=1e-5)
    assert [res["filename"] for res in body["results"]] == ["a.png", "b.jpg", "c.png"]
    assert [res["mode"] for res in body["results"]] == ["RGBA", "CMYK", "I;16"]
    for res in body["results"]:
        assert res["probability"] == pytest.approx(1 / (1 + math.exp(-res["logit"])))
        assert 0.0 <= res["realness_percentile"] <= 100.0
    # The conversion is reported back, as training.preprocess describes it.
    pre = body["preprocessing"]
    assert pre["steps"] == PREPROCESS_STEPS
    assert pre["function"] == preprocess_description(28, 1)["function"]
    assert (pre["resolution"], pre["channels"]) == (28, 1)
    # The model is named in the body and the headers.
    info = client.get("/info").json()["model"]
    assert body["model"] == info
    assert r.headers["X-Model-Id"] == info["model_id"]
    assert r.headers["X-Model-Step"] == "123"
    assert r.headers["X-Checkpoint-Hash"] == info["checkpoint_hash"]


def test_realness_percentile_uses_stored_quantiles(client: TestClient) -> None:
    r = client.post("/score", files=multipart(F.GOOD["gray_png"]()))
    res = r.json()["results"][0]
    # REAL_SCORES: quantiles rise linearly from -4 to 4 over levels 0..1.
    assert res["realness_percentile"] == pytest.approx((res["logit"] + 4.0) / 8.0 * 100.0, abs=1e-6)
    assert r.json()["percentile_reference"] == {
        "num_images": REAL_SCORES["num_images"],
        "source": REAL_SCORES["source"],
        "levels": 1001,
    }


def test_raw_body_with_image_content_type(client: TestClient, ckpt_dir: Path) -> None:
    data = F.GOOD["rgb_jpeg"]()
    r = client.post("/score", content=data, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert res["filename"] is None and res["format"] == "JPEG"
    assert res["logit"] == pytest.approx(expected_logits(ckpt_dir, [data])[0], abs=1e-5)
    r2 = client.post("/score", content=data, headers={"Content-Type": "application/octet-stream"})
    assert r2.status_code == 200 and r2.json()["results"][0]["logit"] == res["logit"]


def test_format_comes_from_bytes_not_name_or_content_type(client: TestClient) -> None:
    png = F.GOOD["rgb_png"]()
    r = client.post("/score", files=[("files", ("photo.jpg", png, "image/jpeg"))])
    assert r.status_code == 200
    assert r.json()["results"][0]["format"] == "PNG"
    r = client.post("/score", content=png, headers={"Content-Type": "image/gif"})
    assert r.json()["results"][0]["format"] == "PNG"


@pytest.mark.parametrize("name", sorted(F.GOOD))
def test_every_supported_kind_is_accepted_and_converted(
    name: str, make_client: ClientFactory, ckpt_dir: Path, rgb_ckpt_dir: Path
) -> None:
    data = F.GOOD[name]()
    for ckpt in (ckpt_dir, rgb_ckpt_dir):
        client = make_client(checkpoint=ckpt)
        r = client.post("/score", files=multipart(data))
        assert r.status_code == 200, (name, r.text)
        res = r.json()["results"][0]
        assert res["logit"] == pytest.approx(expected_logits(ckpt, [data])[0], abs=1e-5)


def test_animated_gif_scores_first_frame(client: TestClient) -> None:
    r = client.post(
        "/score", files=multipart(F.animated_gif(), F.save(Image.new("L", (20, 20), 255), "PNG"))
    )
    first, white = r.json()["results"]
    assert first["frames"] == 2 and white["frames"] == 1
    assert first["logit"] == pytest.approx(white["logit"], abs=1e-6)


def test_all_images_of_a_request_go_through_d_in_one_batch(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    calls: list[tuple[int, ...]] = []
    original = engine._score_sync

    def spy(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return original(x)

    engine._score_sync = spy
    r = client.post("/score", files=multipart(*(F.GOOD["gray_png"]() for _ in range(5))))
    assert r.status_code == 200
    assert calls == [(5, 1, 28, 28)]


def test_percentile_null_with_note_when_checkpoint_has_no_real_scores(
    make_client: ClientFactory, rgb_ckpt_dir: Path
) -> None:
    client = make_client(checkpoint=rgb_ckpt_dir)
    body = client.post("/score", files=multipart(F.GOOD["gray_png"]())).json()
    assert body["results"][0]["realness_percentile"] is None
    assert body["percentile_reference"] is None
    assert any("real_scores" in note for note in body["notes"])
    assert body["preprocessing"]["color_mode"] == "RGB"


BAD = {
    "zero_bytes": (b"", "empty (0 bytes)"),
    "text": (b"hello, I am not an image\n", "looks like text"),
    "tiff": (F.save(F.gradient("RGB"), "TIFF"), "not a supported image"),
    "truncated_png": (F.truncated_png(), "corrupt or truncated"),
    "truncated_jpeg": (F.truncated_jpeg(), "corrupt or truncated"),
    "bomb_png_huge_header": (F.bomb_png(), "too large"),
    "bomb_png_over_service_limit": (F.bomb_png(2049, 2048), "limit is 4194304 pixels"),
    "gif_bad_header": (b"GIF89a\x00\x00", "header cannot be read"),
    "png_signature_only": (b"\x89PNG\r\n\x1a\n", "PNG"),
    "thin_png_1000000x1": (F.thin_png(), "an aspect ratio of 1000000:1"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_files_are_refused_with_a_reason(name: str, client: TestClient) -> None:
    data, phrase = BAD[name]
    good = F.GOOD["gray_png"]()
    r = client.post("/score", files=multipart(good, data, names=["ok.png", f"{name}.png"]))
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "files", 1]
    assert f"files[1] ('{name}.png')" in err["msg"]
    assert phrase in err["msg"]
    assert "Traceback" not in r.text
    # The same file as a raw body: same reason, loc is the body.
    r = client.post("/score", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body"] and phrase in r.json()["detail"][0]["msg"]


def test_pixel_limit_is_configurable(make_client: ClientFactory) -> None:
    client = make_client(max_image_pixels=40 * 30 - 1)
    r = client.post("/score", files=multipart(F.GOOD["gray_png"]()))  # 40 x 30
    assert r.status_code == 422
    assert "40x30 = 1200 pixels" in r.json()["detail"][0]["msg"]


def test_no_files_in_multipart(client: TestClient) -> None:
    r = client.post("/score", files=[("file", ("a.png", F.GOOD["gray_png"](), "image/png"))])
    assert r.status_code == 422
    err = r.json()["detail"][0]
    assert err["loc"] == ["body", "files"] and "'file'" in err["msg"]


def test_text_field_instead_of_file(client: TestClient) -> None:
    r = client.post(
        "/score", data={"files": "not a file"}, files=[("x", ("x", b"1", "text/plain"))]
    )
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "files", 0]
    assert "not a file upload" in r.json()["detail"][0]["msg"]


def test_too_many_files(make_client: ClientFactory) -> None:
    client = make_client(max_images=2)
    png = F.GOOD["gray_png"]()
    assert client.post("/score", files=multipart(png, png)).status_code == 200
    for count in (3, 5):
        r = client.post("/score", files=multipart(*([png] * count)))
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["body", "files"]
        assert "more than 2 images" in r.json()["detail"][0]["msg"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", None])
def test_unsupported_content_type(client: TestClient, content_type: str | None) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    r = client.post("/score", content=b"{}", headers=headers)
    assert r.status_code == 415
    assert "multipart/form-data" in r.json()["detail"]


def test_malformed_multipart(client: TestClient) -> None:
    r = client.post(
        "/score", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}
    )
    assert 400 <= r.status_code < 500
    assert isinstance(r.json()["detail"], (str, list))


def test_small_pngs_are_decoded_on_the_loop_others_in_a_thread(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio.to_thread

    from service.routes import score as score_route

    small = F.GOOD["gray_png"]()
    big = F.save(F.gradient("L", (200, 100)), "PNG")
    jpeg = F.GOOD["rgb_jpeg"]()
    assert score_route.decode_inline([score_route.Upload(0, None, small)])
    assert not score_route.decode_inline([score_route.Upload(0, None, big)])
    assert not score_route.decode_inline([score_route.Upload(0, None, jpeg)])
    assert not score_route.decode_inline([score_route.Upload(0, None, small[:20])])
    # Few pixels but many bytes (Pillow parses each PNG chunk in Python): off the loop too.
    spam = F.chunk_spam_png(2_000)
    assert score_route._png_pixels(spam) == 28 * 28 and len(spam) > score_route.INLINE_MAX_BYTES
    assert not score_route.decode_inline([score_route.Upload(0, None, spam)])
    tenth = F.chunk_spam_png(score_route.INLINE_MAX_TOTAL_BYTES // 12 // 10)
    assert score_route.decode_inline([score_route.Upload(0, None, tenth)])
    assert not score_route.decode_inline([score_route.Upload(i, None, tenth) for i in range(12)])
    threaded: list[int] = []
    original = anyio.to_thread.run_sync

    async def spy(fn: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(fn, "func", None) is score_route.prepare:
            threaded.append(1)
        return await original(fn, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    inline = client.post("/score", files=multipart(small, small))
    assert inline.status_code == 200 and threaded == []
    mixed = client.post("/score", files=multipart(small, big))
    assert mixed.status_code == 200 and threaded == [1]
    # Same results either way: the small image scored inline and in a thread.
    assert inline.json()["results"][0]["logit"] == mixed.json()["results"][0]["logit"]
    truncated = F.truncated_png()
    assert score_route.decode_inline([score_route.Upload(0, None, truncated)])
    bad = client.post("/score", files=multipart(truncated))
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "files", 0]
