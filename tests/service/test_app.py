"""Health, readiness, info, docs, request ids, errors, limits, auth, CORS, start-up failures."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import anyio
import pytest
import torch
from fastapi.testclient import TestClient

from gan.checkpoint import update_config
from gan.preprocess import PREPROCESS_STEPS
from service.app import create_app
from service.inference import StartupError
from service.middleware import BodySizeLimitMiddleware
from service.settings import Settings
from tests.service import imagefiles as F
from tests.service.conftest import ClientFactory, make_checkpoint

# ----------------------------------------------------------------------------------------------
# health, ready, info, docs
# ----------------------------------------------------------------------------------------------


def test_health_and_ready(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 200
    assert r.json()["status"] == "ready"
    assert r.json()["model"] == client.get("/info").json()["model"]


def test_before_models_load_ready_and_model_routes_are_503(ckpt_dir: Path) -> None:
    client = TestClient(create_app(Settings(checkpoint=ckpt_dir)))  # no `with`: no lifespan
    assert client.get("/health").status_code == 200
    r = client.get("/ready")
    assert r.status_code == 503 and "not loaded" in r.json()["detail"]
    assert client.post("/generate", json={}).status_code == 503
    assert client.get("/info").status_code == 503


def test_info_describes_model_limits_and_preprocessing(client: TestClient) -> None:
    info = client.get("/info").json()
    assert info["model"]["step"] == 123
    assert info["model"]["model_id"].startswith("tiny-dcgan-28px-step123-")
    assert info["architecture"]["z_dim"] == info["z_dim"] == 8
    assert (info["resolution"], info["channels"]) == (28, 1)
    assert info["metrics"] == {"fid": 99.5}
    assert info["dataset"] == {"name": "tiny"}
    assert info["limits"]["max_images"] == 64
    assert info["limits"]["max_body_bytes"] == 10 * 1024 * 1024
    assert info["preprocessing"]["steps"] == PREPROCESS_STEPS
    assert info["preprocessing"]["accepted_formats"] == ["PNG", "JPEG", "WEBP", "BMP", "GIF"]
    assert info["generate"]["truncation_mode"] == "resample"
    assert info["real_scores"]["levels"] == 1001
    assert info["auth"] == {"api_key_required": False}


def test_info_shows_the_dataset_not_the_trainers_paths(tmp_path: Path) -> None:
    """A checkpoint written before training stopped recording paths: /info filters them."""
    from tests.gan.test_checkpoint import PORTABLE_RECORD, TRAINER_RECORD

    ckpt = make_checkpoint(tmp_path / "ckpt")
    config = update_config(ckpt, {"dataset": TRAINER_RECORD})
    assert config["dataset"]["path"] == "/home/alice/private/photos"  # as old trainers wrote it
    with TestClient(create_app(Settings(checkpoint=ckpt))) as client:
        info = client.get("/info")
    assert info.json()["dataset"] == PORTABLE_RECORD
    assert "/home/alice" not in info.text and "gan-cache" not in info.text


def test_openapi_docs_have_an_example_for_every_endpoint(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    paths = {
        "/generate": "post",
        "/score": "post",
        "/health": "get",
        "/ready": "get",
        "/info": "get",
    }
    assert set(paths) <= set(spec["paths"])
    schemas = spec["components"]["schemas"]
    for path, method in paths.items():
        op = spec["paths"][path][method]
        text = json.dumps(op)
        has_example = "example" in text  # request examples, or inline response examples
        ref = (
            op["responses"]["200"]["content"]
            .get("application/json", {})
            .get("schema", {})
            .get("$ref")
        )
        if ref:
            has_example = has_example or "example" in schemas[ref.rsplit("/", 1)[1]]
        assert has_example, f"{method.upper()} {path} has no worked example"
        assert "curl" in op["description"], f"{method.upper()} {path} has no curl example"
    gen_examples = spec["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"][
        "examples"
    ]
    assert {"one_png", "grid", "json_truncated", "explicit_z", "interpolate"} <= set(gen_examples)
    score_body = spec["paths"]["/score"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/png"} <= set(score_body)
    # The key-protected routes show the bearer scheme (the lock in /docs).
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, method in (("/generate", "post"), ("/score", "post"), ("/info", "get")):
        assert spec["paths"][path][method]["security"] == [{"HTTPBearer": []}], path
    assert "security" not in spec["paths"]["/metrics"]["get"]


# ----------------------------------------------------------------------------------------------
# request ids, access log, unexpected errors
# ----------------------------------------------------------------------------------------------


def test_request_id_generated_honoured_or_replaced(client: TestClient) -> None:
    generated = client.get("/health").headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    assert (
        client.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    for insane in ("x" * 200, "bad id with spaces", "ünïcode".encode()):
        got = client.get("/health", headers={"X-Request-ID": insane})
        assert got.headers["X-Request-ID"] != insane and len(got.headers["X-Request-ID"]) == 32
    assert client.get("/health").headers["X-Content-Type-Options"] == "nosniff"


def test_access_log_line_per_request(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.post("/generate", json={"n": 99}, headers={"X-Request-ID": "req-42"})
    (rec,) = [
        r for r in caplog.records if r.name == "service.access" and r.getMessage() == "request"
    ]
    assert rec.request_id == "req-42"  # type: ignore[attr-defined]
    assert (rec.method, rec.path, rec.status) == ("POST", "/generate", 422)  # type: ignore[attr-defined]
    assert rec.latency_ms >= 0 and rec.client  # type: ignore[attr-defined]


def test_json_log_formatter_emits_the_extra_fields() -> None:
    from service.logconfig import JsonFormatter

    record = logging.makeLogRecord(
        {
            "name": "service.access",
            "levelno": 20,
            "levelname": "INFO",
            "msg": "request",
            "request_id": "r1",
            "status": 200,
            "latency_ms": 1.5,
        }
    )
    out = json.loads(JsonFormatter().format(record))
    assert out["msg"] == "request" and out["request_id"] == "r1" and out["status"] == 200
    assert out["level"] == "INFO" and out["ts"].endswith("Z")


def test_unexpected_error_is_a_json_500_with_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]

    def boom(z: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("secret internal detail")

    engine._generate_sync = boom
    with caplog.at_level(logging.ERROR, logger="service.error"):
        r = client.post("/generate", json={"seed": 1}, headers={"X-Request-ID": "trace-me"})
    assert r.status_code == 500
    assert r.headers["X-Request-ID"] == "trace-me"
    assert r.json()["request_id"] == "trace-me" and "trace-me" in r.json()["detail"]
    assert "secret internal detail" not in r.text and "Traceback" not in r.text
    (rec,) = [rec for rec in caplog.records if rec.name == "service.error"]
    assert rec.request_id == "trace-me" and rec.exc_info is not None  # type: ignore[attr-defined]
    assert client.get("/health").status_code == 200  # still serving


# ----------------------------------------------------------------------------------------------
# body size limit and stalled bodies
# ----------------------------------------------------------------------------------------------


def test_body_limit_by_content_length(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=2048)
    r = client.post(
        "/score", content=b"\x89PNG" + b"\0" * 4000, headers={"Content-Type": "image/png"}
    )
    assert r.status_code == 413
    assert "2048 bytes" in r.json()["detail"] and "GAN_MAX_BODY_BYTES" in r.json()["detail"]
    assert r.headers["X-Request-ID"]
    ok = client.post("/score", content=F.GOOD["gray_png"](), headers={"Content-Type": "image/png"})
    assert ok.status_code == 200


def test_body_limit_counts_chunked_uploads(make_client: ClientFactory) -> None:
    client = make_client(max_body_bytes=4096)

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for _ in range(10):
            yield b"\0" * 1000

    for path, ctype in (("/score", "image/png"), ("/generate", "application/json")):
        r = client.post(path, content=chunks(), headers={"Content-Type": ctype})
        assert r.status_code == 413, (path, r.text)
        assert "4096 bytes" in r.json()["detail"]
    mp = client.post("/score", files=[("files", ("a.png", b"\0" * 5000, "image/png"))])
    assert mp.status_code == 413


def _run_middleware(
    messages: list[tuple[float, dict[str, Any]]], *, limit: int, timeout: float
) -> tuple[list[dict[str, Any]], list[int]]:
    """Drive BodySizeLimitMiddleware around an app that reads the whole body."""
    sent: list[dict[str, Any]] = []
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            msg = await receive()
            seen.append(len(msg.get("body", b"")))
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> None:
        queue = list(messages)

        async def receive() -> dict[str, Any]:
            delay, msg = queue.pop(0)
            await anyio.sleep(delay)
            return msg

        async def send(msg: MutableMapping[str, Any]) -> None:
            sent.append(dict(msg))

        mw = BodySizeLimitMiddleware(app, max_body_bytes=limit, body_timeout_s=timeout)
        await mw({"type": "http", "headers": []}, receive, send)

    anyio.run(main)
    return sent, seen


def test_stalled_body_gets_408() -> None:
    chunk = {"type": "http.request", "body": b"a" * 10, "more_body": True}
    sent, seen = _run_middleware([(0, chunk), (0.5, chunk)], limit=1000, timeout=0.05)
    assert sent[0]["status"] == 408 and seen == [10]
    assert b"GAN_BODY_TIMEOUT_S" in sent[1]["body"]


def test_middleware_counts_bytes_and_passes_small_bodies() -> None:
    chunk = {"type": "http.request", "body": b"a" * 10, "more_body": True}
    last = {"type": "http.request", "body": b"a" * 10, "more_body": False}
    sent, seen = _run_middleware([(0, chunk), (0, chunk), (0, last)], limit=30, timeout=1)
    assert sent[0]["status"] == 200 and seen == [10, 10, 10]
    sent, seen = _run_middleware(
        [(0, chunk), (0, chunk), (0, chunk), (0, last)], limit=30, timeout=1
    )
    assert sent[0]["status"] == 413 and seen == [10, 10, 10]  # the 4th chunk is never handed on


# ----------------------------------------------------------------------------------------------
# responsiveness: inference runs off the event loop
# ----------------------------------------------------------------------------------------------


def test_health_answers_while_a_large_request_runs(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    entered, release = threading.Event(), threading.Event()
    original = engine._generate_sync

    def slow(z: torch.Tensor) -> torch.Tensor:
        entered.set()
        assert release.wait(30), "test did not release the generator"
        return original(z)

    engine._generate_sync = slow
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(r=client.post("/generate", json={"n": 64, "format": "grid"}))
    )
    worker.start()
    try:
        assert entered.wait(30), "generate never reached the engine"
        for path in ("/health", "/ready"):
            assert client.get(path).status_code == 200  # answered while generate is blocked
        assert "r" not in result
    finally:
        release.set()
        worker.join(30)
    assert result["r"].status_code == 200


# ----------------------------------------------------------------------------------------------
# API key and CORS
# ----------------------------------------------------------------------------------------------


def test_api_key_protects_model_endpoints_only(make_client: ClientFactory) -> None:
    client = make_client(api_key="s3cret-key")
    png = F.GOOD["gray_png"]()
    calls = {
        "generate": lambda h: client.post("/generate", json={"seed": 1}, headers=h),
        "score": lambda h: client.post(
            "/score", content=png, headers={"Content-Type": "image/png", **h}
        ),
        "info": lambda h: client.get("/info", headers=h),
    }
    for name, call in calls.items():
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Basic s3cret-key"},
            {"Authorization": "Bearer s3cret-key-and-more"},
        ):
            r = call(headers)
            assert r.status_code == 401, (name, headers)
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
            assert "GAN_API_KEY" in r.json()["detail"]
        assert call({"Authorization": "Bearer s3cret-key"}).status_code == 200, name
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/docs").status_code == 200
    assert client.get("/info", headers={"Authorization": "Bearer s3cret-key"}).json()["auth"] == {
        "api_key_required": True
    }


def test_cors_off_by_default(client: TestClient) -> None:
    r = client.get("/health", headers={"Origin": "https://example.org"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/generate",
        headers={"Origin": "https://example.org", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_configured_origins(make_client: ClientFactory) -> None:
    client = make_client(cors_origins="https://app.example.org, http://localhost:3000")
    pre = client.options(
        "/generate",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert pre.status_code == 200
    assert pre.headers["access-control-allow-origin"] == "https://app.example.org"
    r = client.post("/generate", json={"seed": 1}, headers={"Origin": "http://localhost:3000"})
    assert r.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "X-Model-Id" in r.headers["access-control-expose-headers"]
    other = client.get("/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


# ----------------------------------------------------------------------------------------------
# start-up failures: one message naming the file and the problem
# ----------------------------------------------------------------------------------------------


def _start(ckpt: Path, **settings: Any) -> None:
    with TestClient(create_app(Settings(checkpoint=ckpt, **settings))):
        pass


def _broken(tmp_path: Path, how: str) -> tuple[Path, str]:
    ckpt = make_checkpoint(tmp_path / "ckpt")
    if how == "missing_dir":
        return tmp_path / "nope", "does not exist"
    if how == "missing_config":
        (ckpt / "config.json").unlink()
        return ckpt, "config.json: missing"
    if how == "bad_json":
        (ckpt / "config.json").write_text("{not json")
        return ckpt, "config.json: not valid JSON"
    if how == "corrupt_weights":
        data = bytearray((ckpt / "generator.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (ckpt / "generator.safetensors").write_bytes(bytes(data))
        return ckpt, "generator.safetensors: SHA-256"
    if how == "missing_weights":
        (ckpt / "discriminator.safetensors").unlink()
        return ckpt, "discriminator.safetensors: missing"
    if how == "wrong_architecture":
        update_config(ckpt, {"model": {"z_dim": 16}})
        return ckpt, "generator.safetensors: tensor"
    if how == "inconsistent_resolution":
        update_config(ckpt, {"resolution": 64})
        return ckpt, "config.json: 'resolution' is 64"
    if how == "bad_real_scores":
        update_config(ckpt, {"real_scores": {"levels": [0.0, 1.0], "quantiles": [2.0, 1.0]}})
        return ckpt, "config.json: 'real_scores' 'quantiles' must be non-decreasing"
    if how == "real_scores_lengths":
        update_config(ckpt, {"real_scores": {"levels": [0.0, 0.5, 1.0], "quantiles": [1.0]}})
        return ckpt, "must have the same length"
    if how == "not_a_dir":
        f = tmp_path / "file"
        f.write_text("x")
        return f, "is not a directory"
    raise AssertionError(how)


BROKEN = [
    "missing_dir",
    "missing_config",
    "bad_json",
    "corrupt_weights",
    "missing_weights",
    "wrong_architecture",
    "inconsistent_resolution",
    "bad_real_scores",
    "real_scores_lengths",
    "not_a_dir",
]


@pytest.mark.parametrize("how", BROKEN)
def test_bad_checkpoint_stops_startup_with_a_clear_message(tmp_path: Path, how: str) -> None:
    ckpt, phrase = _broken(tmp_path, how)
    with pytest.raises(StartupError) as info:
        _start(ckpt)
    message = str(info.value)
    assert phrase in message, message
    assert "\n" not in message
    assert str(ckpt) in message or str(ckpt.parent) in message


def test_unavailable_device_stops_startup(ckpt_dir: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(StartupError, match="CUDA is not available"):
        _start(ckpt_dir, device="cuda")
    with pytest.raises(StartupError, match="not a torch device"):
        _start(ckpt_dir, device="potato")


def test_lifespan_failure_reports_one_line_to_the_server(tmp_path: Path) -> None:
    """The ASGI lifespan.startup.failed message carries the one-line reason, not a traceback."""
    app = create_app(Settings(checkpoint=tmp_path / "missing"))
    messages: list[dict[str, Any]] = []

    async def main() -> None:
        queue = [{"type": "lifespan.startup"}]

        async def receive() -> dict[str, Any]:
            if queue:
                return queue.pop(0)
            await anyio.sleep_forever()
            raise AssertionError

        async def send(msg: MutableMapping[str, Any]) -> None:
            messages.append(dict(msg))

        with pytest.raises(StartupError):
            await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)

    anyio.run(main)
    (failed,) = messages
    assert failed["type"] == "lifespan.startup.failed"
    assert failed["message"] == f"checkpoint directory {tmp_path / 'missing'} does not exist"


def test_checkpoint_copy_serves_identically(tmp_path: Path, ckpt_dir: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(ckpt_dir, copy)
    outs = []
    for path in (ckpt_dir, copy):
        with TestClient(create_app(Settings(checkpoint=path))) as c:
            outs.append((c.post("/generate", json={"seed": 2}).content, c.get("/ready").json()))
    assert outs[0] == outs[1]
