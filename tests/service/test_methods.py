"""POST /generate with a sampling method: counts, per-image statistics, reproducibility by
seed (alone, in a request, under concurrency), cost caps, bad options, calibration; /info's
generate.methods and calibration; /score's calibrated_probability."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gan.checkpoint import load_checkpoint
from gan.samplers import METHOD_NAMES, parse_options
from gan.samplers.dispatch import Models, sample
from service.batching import GRADIENT, BatchScheduler, SoloRows
from service.inference import BatchingOptions, InferenceEngine
from service.metrics import Metrics
from tests.service.conftest import ClientFactory, make_checkpoint
from training.export import calibrate_checkpoint

FAST: dict[str, dict[str, Any]] = {
    "drs": {"keep": 0.9, "max_proposals": 8},
    "mh": {"proposals": 4},
    "langevin": {"steps": 3, "step_size": 0.05},
    "pixel_ascent": {"steps": 3, "start": "sample"},
}


def noise(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 255).byte()


@pytest.fixture(scope="module")
def calibrated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_checkpoint(tmp_path_factory.mktemp("methods") / "calibrated")
    calibrate_checkpoint(path, noise(60), None, num=200, real_source="noise")
    return path


@pytest.fixture(scope="module")
def calibrated_cond_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_checkpoint(tmp_path_factory.mktemp("methods") / "cond", classes=["a", "b", "c"])
    calibrate_checkpoint(path, noise(60, 1), torch.arange(60) % 3, num=200)
    return path


@pytest.fixture
def calibrated(make_client: ClientFactory, calibrated_dir: Path) -> TestClient:
    return make_client(checkpoint=calibrated_dir)


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def images_of(body: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(im["png_base64"]) for im in body["images"]]


def generate(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/generate", json={"format": "json", **body})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("method", list(FAST))
def test_every_method_reports_each_image_and_the_request(
    calibrated: TestClient, method: str
) -> None:
    body = generate(calibrated, n=4, seed=21, method=method, method_options=FAST[method])
    assert len(body["images"]) == 4
    sampling = body["sampling"]
    assert sampling["method"] == method
    assert sampling["method_options"] == parse_options(method, FAST[method]).__dict__
    assert sampling["seconds"] > 0
    cost = sampling["cost"]
    for im in body["images"]:
        assert im["method"] == method
        assert isinstance(im["logit_before"], float) and isinstance(im["logit_after"], float)
        if method == "drs":
            assert 1 <= im["proposals"] <= 8 and im["steps"] == 0
            assert isinstance(im["accepted"], bool)
        elif method == "mh":
            assert im["proposals"] == 4 and isinstance(im["accepted"], bool)
        else:
            assert im["steps"] == 3 and im["accepted"] is None
        assert (im["latent"] is None) == (method == "pixel_ascent")
    if method in ("drs", "mh"):
        assert 0.0 <= sampling["acceptance_rate"] <= 1.0
        tried = sum(im["proposals"] for im in body["images"])
        assert cost["generator_forwards"] == cost["discriminator_forwards"] == tried
    else:
        assert sampling["acceptance_rate"] is None
        assert cost["discriminator_backwards"] == 4 * 3
    # The core sampler makes the same images for these seeds.
    ck = load_checkpoint(Path(calibrated.app.state.settings.checkpoint))  # type: ignore[attr-defined]
    want = sample(Models.of(ck), parse_options(method, FAST[method]), seed=21, n=4).images
    for got, expected in zip(images_of(body), want, strict=True):
        assert np.abs(pixels(got) - expected[0].numpy().astype(np.int16)).max() <= 1


@pytest.mark.parametrize("method", list(FAST))
def test_a_seed_gives_the_same_image_alone_and_as_png(calibrated: TestClient, method: str) -> None:
    options = FAST[method]
    body = generate(calibrated, n=3, seed=50, method=method, method_options=options)
    for i, png in enumerate(images_of(body)):
        alone = calibrated.post(
            "/generate", json={"seed": 50 + i, "method": method, "method_options": options}
        )
        assert alone.status_code == 200
        assert alone.headers["X-Sampling-Method"] == method
        assert np.abs(pixels(alone.content) - pixels(png)).max() <= 1
    if method in ("drs", "mh"):
        assert 0 <= float(alone.headers["X-Acceptance-Rate"]) <= 1
    else:
        assert "X-Acceptance-Rate" not in alone.headers
    grid = calibrated.post(
        "/generate",
        json={"n": 3, "seed": 50, "method": method, "method_options": options, "format": "grid"},
    )
    assert grid.status_code == 200 and grid.headers["X-Image-Count"] == "3"


def test_plain_is_unchanged_and_reports_itself(calibrated: TestClient) -> None:
    body = generate(calibrated, n=2, seed=4)
    assert body["sampling"]["method"] == "plain" and body["sampling"]["method_options"] == {}
    assert body["sampling"]["cost"]["generator_forwards"] == 2
    im = body["images"][0]
    assert (im["method"], im["proposals"], im["steps"], im["logit_after"]) == ("plain", 1, 0, None)
    explicit = generate(calibrated, n=2, seed=4, method="plain")
    assert images_of(explicit) == images_of(body)
    by_z = calibrated.post("/generate", json={"z": [im["latent"]]})
    assert by_z.content == images_of(body)[0]
    # A drs image reproduces with method plain from the latent it reports.
    drs = generate(calibrated, n=2, seed=4, method="drs", method_options=FAST["drs"])
    again = calibrated.post("/generate", json={"z": [drs["images"][1]["latent"]]})
    assert np.abs(pixels(again.content) - pixels(images_of(drs)[1])).max() <= 1


def test_conditional_methods_use_each_images_class(
    make_client: ClientFactory, calibrated_cond_dir: Path
) -> None:
    client = make_client(checkpoint=calibrated_cond_dir)
    for method, options in FAST.items():
        body = generate(client, n=3, seed=9, label="b", method=method, method_options=options)
        assert [im["label"] for im in body["images"]] == [1, 1, 1]
        ck = load_checkpoint(calibrated_cond_dir)
        typed = parse_options(method, options)
        want = sample(Models.of(ck), typed, seed=9, n=3, labels=1).images
        got = np.stack([pixels(p) for p in images_of(body)])
        assert np.abs(got - want[:, 0].numpy().astype(np.int16)).max() <= 1


# ----------------------------------------------------------------------------------------------
# refused: bad options, cost caps, no seeds, no calibration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "loc", "phrase"),
    [
        (
            {"method": "drs", "method_options": {"keep": 1.5}},
            ["method_options", "keep"],
            "less than or equal to 0.99",
        ),
        (
            {"method": "drs", "method_options": {"max_proposals": 0}},
            ["method_options", "max_proposals"],
            "greater than or equal to 1",
        ),
        (
            {"method": "mh", "method_options": {"proposals": 2.5}},
            ["method_options", "proposals"],
            "valid integer",
        ),
        (
            {"method": "langevin", "method_options": {"step_size": 0}},
            ["method_options", "step_size"],
            "greater than 0",
        ),
        (
            {"method": "pixel_ascent", "method_options": {"start": "zeros"}},
            ["method_options", "start"],
            "'noise' or 'sample'",
        ),
        (
            {"method": "drs", "method_options": {"strength": 1}},
            ["method_options", "strength"],
            "Extra inputs",
        ),
        ({"method_options": {"keep": 0.5}}, ["method_options"], "method 'plain' takes no options"),
        ({"method": "argmax"}, ["method"], "Input should be"),
        ({"method": "langevin", "z": [[0.0] * 8]}, ["method"], "give seed and n instead of z"),
        (
            {"method": "drs", "interpolate": {"from_seed": 1, "to_seed": 2}},
            ["method"],
            "instead of interpolate",
        ),
    ],
)
def test_bad_method_requests_are_422_naming_the_field(
    calibrated: TestClient, body: dict[str, Any], loc: list[str], phrase: str
) -> None:
    r = calibrated.post("/generate", json=body)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", *loc] and phrase in err["msg"], err


@pytest.mark.parametrize(
    ("method", "option", "value", "setting"),
    [
        ("drs", "max_proposals", 5, "GAN_MAX_PROPOSALS"),
        ("mh", "proposals", 5, "GAN_MAX_PROPOSALS"),
        ("langevin", "steps", 3, "GAN_MAX_LANGEVIN_STEPS"),
        ("pixel_ascent", "steps", 3, "GAN_MAX_ASCENT_STEPS"),
    ],
)
def test_cost_caps_are_limits_with_a_422_that_names_them(
    make_client: ClientFactory,
    calibrated_dir: Path,
    method: str,
    option: str,
    value: int,
    setting: str,
) -> None:
    client = make_client(
        checkpoint=calibrated_dir, max_proposals=4, max_langevin_steps=2, max_ascent_steps=2
    )
    r = client.post(
        "/generate", json={"seed": 1, "method": method, "method_options": {option: value}}
    )
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "method_options", option] and err["type"] == "cost_cap"
    assert setting in err["msg"] and f"at most {value - 1} per image" in err["msg"]
    at_cap = client.post(
        "/generate", json={"seed": 1, "method": method, "method_options": {option: value - 1}}
    )
    assert at_cap.status_code == 200
    methods = {m["name"]: m for m in client.get("/info").json()["generate"]["methods"]}
    shown = {o["name"]: o for o in methods[method]["options"]}[option]
    assert shown["maximum"] == value - 1 and shown["cap_setting"] == setting


def test_methods_that_need_calibration_say_how_to_add_it(client: TestClient) -> None:
    """The default test checkpoint has no calibration, like the bundled one and older ones."""
    for method in ("drs", "mh"):
        r = client.post("/generate", json={"seed": 1, "method": method})
        assert r.status_code == 422
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "method"] and err["type"] == "calibration_missing"
        assert "gan-calibrate --checkpoint DIR" in err["msg"] and "restart" in err["msg"]
    assert (
        client.post(
            "/generate", json={"seed": 1, "method": "langevin", "method_options": {"steps": 2}}
        ).status_code
        == 200
    )
    info = client.get("/info").json()
    assert info["calibration"] is None and info["generate"]["calibrated"] is False
    available = {m["name"]: m["available"] for m in info["generate"]["methods"]}
    assert available == {
        "plain": True,
        "drs": False,
        "mh": False,
        "langevin": True,
        "pixel_ascent": True,
    }
    reason = next(m for m in info["generate"]["methods"] if m["name"] == "drs")
    assert "gan-calibrate" in reason["unavailable_reason"]


def test_keep_outside_the_calibrations_levels_is_a_422(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    """A calibration written elsewhere (by hand, say) that measured fewer keep levels."""
    from gan.checkpoint import update_config

    path = make_checkpoint(tmp_path / "c")
    entry = {
        "kind": "platt",
        "platt": {"a": 1.0, "b": 0.0},
        "ece": 0.01,
        "num_real": 10,
        "num_fake": 10,
        "drs": {
            "d_max": 1.0,
            "eps": 1e-6,
            "keep_levels": [0.0, 0.5],
            "gammas": [-1.0, 0.0],
            "acceptance": [0.5, 0.3],
            "num_images": 10,
        },
    }
    update_config(path, {"calibration": entry})
    client = make_client(checkpoint=path)
    r = client.post("/generate", json={"seed": 1, "method": "drs", "method_options": {"keep": 0.8}})
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "method_options", "keep"] and "keep 0..0.5 only" in err["msg"]
    ok = client.post(
        "/generate", json={"seed": 1, "method": "drs", "method_options": {"keep": 0.25}}
    )
    assert ok.status_code == 200


# ----------------------------------------------------------------------------------------------
# /info and /score
# ----------------------------------------------------------------------------------------------


def test_info_advertises_the_methods_options_defaults_caps_and_calibration(
    calibrated: TestClient, calibrated_dir: Path
) -> None:
    info = calibrated.get("/info").json()
    methods = info["generate"]["methods"]
    assert [m["name"] for m in methods] == list(METHOD_NAMES)
    assert all(m["available"] for m in methods)
    drs = {o["name"]: o for o in methods[1]["options"]}
    assert drs["keep"] == {
        "name": "keep",
        "type": "number",
        "default": 0.8,
        "minimum": 0.0,
        "maximum": 0.99,
        "description": drs["keep"]["description"],
    }
    assert drs["max_proposals"]["maximum"] == 64 and drs["max_proposals"]["default"] == 32
    start = {o["name"]: o for o in methods[4]["options"]}["start"]
    assert start["enum"] == ["noise", "sample"] and start["type"] == "string"
    cal = load_checkpoint(calibrated_dir).config.calibration
    assert cal is not None
    assert info["calibration"]["kind"] == cal.kind and info["calibration"]["ece"] == cal.ece
    assert info["calibration"]["num_real"] == 60 and info["calibration"]["real_source"] == "noise"
    assert info["limits"]["max_proposals"] == 64


def test_score_adds_the_calibrated_probability(
    calibrated: TestClient, calibrated_dir: Path, client: TestClient
) -> None:
    png = calibrated.post("/generate", json={"seed": 3}).content
    result = calibrated.post("/score", files={"files": ("a.png", png, "image/png")}).json()
    item = result["results"][0]
    cal = load_checkpoint(calibrated_dir).config.calibration
    assert cal is not None
    assert item["calibrated_probability"] == pytest.approx(cal.probability(item["logit"]))
    assert not any("calibrat" in note for note in result["notes"])
    plain = client.post("/score", files={"files": ("a.png", png, "image/png")}).json()
    assert plain["results"][0]["calibrated_probability"] is None
    assert any("gan-calibrate" in note for note in plain["notes"])


def test_openapi_documents_each_methods_options(calibrated: TestClient) -> None:
    schema = calibrated.get("/openapi.json").json()["components"]["schemas"]
    request = schema["GenerateRequest"]["properties"]
    assert request["method"]["enum"] == list(METHOD_NAMES)
    titles = [s.get("title") for s in request["method_options"]["anyOf"]]
    assert titles == ["DrsOptions", "MhOptions", "LangevinOptions", "PixelAscentOptions", None]


# ----------------------------------------------------------------------------------------------
# the engine: concurrency, gradient jobs
# ----------------------------------------------------------------------------------------------


def test_concurrent_method_requests_give_what_each_gives_alone(calibrated_dir: Path) -> None:
    metrics = Metrics()
    engine = InferenceEngine.load(
        calibrated_dir, batching=BatchingOptions(max_batch=5), metrics=metrics.for_model("m")
    )
    jobs = [
        ("drs", [1, 2, 3]),
        ("mh", [4, 5]),
        ("drs", [6]),
        ("langevin", [7, 8, 9]),
        ("pixel_ascent", [10, 11]),
        ("mh", [12, 13, 14, 15]),
    ]
    try:

        async def run(method: str, seeds: list[int]) -> torch.Tensor:
            result = await engine.sample(parse_options(method, FAST[method]), seeds)
            return result.images

        async def together() -> list[torch.Tensor]:
            return list(await asyncio.gather(*(run(m, s) for m, s in jobs)))

        concurrent = asyncio.run(together())
        for (method, seeds), got in zip(jobs, concurrent, strict=True):
            for seed, image in zip(seeds, got, strict=True):
                alone = asyncio.run(run(method, [seed]))[0]
                assert (alone.int() - image.int()).abs().max() <= 1, (method, seed)
        # The gradient jobs went through the scheduler: 5 images in chunks of at most 5.
        count = metrics.registry.get_sample_value(
            "gan_batch_size_count", {"model_name": "m", "model": GRADIENT}
        )
        total = metrics.registry.get_sample_value(
            "gan_batch_size_sum", {"model_name": "m", "model": GRADIENT}
        )
        assert count is not None and total is not None and total >= 5 and count >= 2
    finally:
        engine.close()


def test_gradient_jobs_run_alone_in_chunks_of_max_batch() -> None:
    from concurrent.futures import ThreadPoolExecutor

    seen: list[list[tuple[int, int, int]]] = []
    lock = threading.Lock()

    def run(kind: str, chunks: list[Any]) -> torch.Tensor:
        assert kind == GRADIENT
        with lock:
            seen.append([(id(c.run), c.first, c.count) for c in chunks])
        (chunk,) = chunks
        return chunk.run(chunk.first, chunk.count)

    def rows(tag: int) -> Any:
        return lambda first, count: torch.full((count,), tag * 100 + first, dtype=torch.int64)

    executor = ThreadPoolExecutor(1)
    sched = BatchScheduler(run, executor, max_batch=2)

    async def main() -> list[torch.Tensor]:
        a = sched.submit(GRADIENT, SoloRows(rows(1), 5))
        b = sched.submit(GRADIENT, SoloRows(rows(2), 3))
        return list(await asyncio.gather(a, b))

    try:
        first, second = asyncio.run(main())
        with pytest.raises(ValueError, match="only they"):
            asyncio.run(sched.submit(GRADIENT, torch.zeros(2)))
    finally:
        executor.shutdown()
    assert first.tolist() == [100, 100, 102, 102, 104]
    assert second.tolist() == [200, 200, 202]
    assert all(len(batch) == 1 for batch in seen)  # never two jobs in one batch
    assert sorted(count for batch in seen for _, _, count in batch) == [1, 1, 2, 2, 2]
