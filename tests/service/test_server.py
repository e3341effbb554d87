"""The real ``gan-serve`` process: start-up, HTTP calls, graceful SIGTERM, start-up failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.service import imagefiles as F
from tests.service.conftest import ServerProcess

pytestmark = pytest.mark.slow


def test_real_server_serves_and_stops_cleanly(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server("--checkpoint", str(ckpt_dir), "--host", "127.0.0.1", "--port", "0")
    base = server.wait_started()
    assert base.startswith("http://127.0.0.1:")
    with httpx.Client(base_url=base, timeout=30) as http:
        ready = http.get("/ready")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        gen = http.post("/generate", json={"seed": 21}, headers={"X-Request-ID": "real-gen"})
        assert gen.status_code == 200 and gen.headers["content-type"] == "image/png"
        assert gen.headers["X-Request-ID"] == "real-gen"
        sc = http.post("/score", files=[("files", ("a.png", F.GOOD["rgba_png"](), "image/png"))])
        assert sc.status_code == 200
        assert sc.json()["results"][0]["format"] == "PNG"
        bad = http.post("/generate", json={"n": 10_000})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "n"]
    # Same seed, same bytes: the separate process agrees with an in-process app.
    with TestClient(create_app(Settings(checkpoint=ckpt_dir))) as local:
        assert local.post("/generate", json={"seed": 21}).content == gen.content
    assert server.stop() == 0
    access = [
        r
        for r in server.records()
        if r.get("logger") == "service.access" and r.get("msg") == "request"
    ]
    gen_line = next(r for r in access if r["request_id"] == "real-gen")
    assert (
        gen_line["method"] == "POST"
        and gen_line["path"] == "/generate"
        and gen_line["status"] == 200
    )
    assert gen_line["latency_ms"] > 0 and gen_line["client"].startswith("127.0.0.1:")
    assert not any("Traceback" in line for line in server.lines)


def test_sigterm_lets_an_in_flight_request_finish(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0", "--log-level", "debug")
    base = server.wait_started()
    png = F.GOOD["gray_png"]()
    release = threading.Event()
    result: dict[str, Any] = {}

    def body() -> Iterator[bytes]:  # a slow upload: the second half waits for the test
        yield png[: len(png) // 2]
        assert release.wait(60)
        yield png[len(png) // 2 :]

    def call() -> None:
        try:
            result["r"] = httpx.post(
                base + "/score",
                content=body(),
                headers={"Content-Type": "image/png", "X-Request-ID": "slow-1"},
                timeout=60,
            )
        except Exception as exc:
            result["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    try:
        server.wait_for(
            lambda r: r.get("msg") == "request start" and r.get("request_id") == "slow-1"
        )
        server.proc.send_signal(signal.SIGTERM)
        server.wait_for(lambda r: r.get("msg") == "Shutting down")
        assert server.proc.poll() is None  # still running: it waits for the request
    finally:
        release.set()
        worker.join(60)
    assert "error" not in result, result.get("error")
    assert result["r"].status_code == 200
    assert result["r"].json()["results"][0]["format"] == "PNG"
    assert server.stop() == 0


def test_bad_checkpoint_exits_nonzero_with_one_line(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    missing = tmp_path / "missing"
    server = start_server("--checkpoint", str(missing), "--port", "0")
    assert server.wait() == 1
    assert server.lines[-1] == f"gan-serve: error: checkpoint directory {missing} does not exist"
    assert not any("Traceback" in line for line in server.lines)
    assert not [r for r in server.records() if r.get("level") == "ERROR"]  # no duplicate noise


def test_console_script_reports_corrupt_weights(tmp_path: Path, ckpt_dir: Path) -> None:
    import shutil

    script = Path(sys.executable).parent / "gan-serve"
    if not script.exists():
        pytest.skip("gan-serve console script not installed in this environment")
    ckpt = tmp_path / "ckpt"
    shutil.copytree(ckpt_dir, ckpt)
    weights = ckpt / "discriminator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"garbage!")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GAN_")}
    env.update({"GAN_CHECKPOINT": str(ckpt), "GAN_PORT": "0"})
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"gan-serve: error: {weights}: SHA-256")
    assert "Traceback" not in proc.stderr


def test_workers_setting_starts_several_processes(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server("--port", "0", env={"GAN_WORKERS": "2", "GAN_CHECKPOINT": str(ckpt_dir)})
    base = server.wait_started()
    server.wait_for(
        lambda r: r.get("msg") == "Application startup complete." and _count(server, r) >= 2
    )
    with httpx.Client(base_url=base, timeout=30) as http:
        assert http.get("/ready").status_code == 200
        assert http.post("/generate", json={"seed": 3}).status_code == 200
    assert server.stop() == 0
    loaded = [r for r in server.records() if r.get("msg") == "model loaded"]
    assert len(loaded) == 2
    assert not [r for r in server.records() if r.get("logger") == "uvicorn.access"]


def _count(server: ServerProcess, rec: dict[str, Any]) -> int:
    return sum(1 for r in server.records() if r.get("msg") == rec.get("msg"))


def _loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("env", "expect_c"),
    [({}, True), ({"GAN_HTTP": "h11", "GAN_LOOP": "asyncio"}, False)],
    ids=["auto", "h11+asyncio"],
)
def test_http_stack_settings_reach_uvicorn(
    start_server: Callable[..., ServerProcess],
    ckpt_dir: Path,
    env: dict[str, str],
    expect_c: bool,
) -> None:
    """GAN_HTTP / GAN_LOOP choose uvicorn's parser and loop: by default the C ones (httptools,
    uvloop, dependencies of the service) are loaded into the server process, with h11+asyncio
    neither is; both stacks serve the same bytes."""
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0", env=env)
    base = server.wait_started()
    with httpx.Client(base_url=base, timeout=30) as http:
        gen = http.post("/generate", json={"seed": 5})
        assert gen.status_code == 200
        assert http.post("/generate").status_code == 200  # an empty body is {}
    maps = _loaded_libraries(server.proc.pid)
    assert ("uvloop" in maps) is expect_c
    assert ("httptools" in maps) is expect_c
    assert server.stop() == 0
    with TestClient(create_app(Settings(checkpoint=ckpt_dir))) as local:
        assert local.post("/generate", json={"seed": 5}).content == gen.content


def test_bad_http_setting_exits_2(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0", env={"GAN_HTTP": "h2"})
    assert server.wait() == 2
    assert server.lines[-1].startswith("gan-serve: error: invalid settings: GAN_HTTP:")


def test_a_training_run_folder_serves_its_best_checkpoint(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path, tmp_path: Path
) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ckpt_dir, run / "checkpoints" / "best")
    shutil.copytree(ckpt_dir, run / "checkpoints" / "latest")
    server = start_server("--checkpoint", str(run), "--port", "0")
    base = server.wait_started()
    with httpx.Client(base_url=base, timeout=30) as http:
        served = http.post("/generate", json={"seed": 3})
    assert served.status_code == 200
    with TestClient(create_app(Settings(checkpoint=ckpt_dir))) as local:
        assert local.post("/generate", json={"seed": 3}).content == served.content
    assert server.stop() == 0
    notes = [r for r in server.records() if "is a training run" in str(r.get("msg"))]
    assert notes and notes[0]["checkpoint"] == str(run / "checkpoints" / "best")
    assert "the best by its metric" in notes[0]["msg"]


def test_a_folder_without_a_checkpoint_says_what_to_pass(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = start_server("--checkpoint", str(tmp_path), "--port", "0")
    assert server.wait() == 1
    last = server.lines[-1]
    assert last.startswith(f"gan-serve: error: {tmp_path / 'config.json'}: missing")
    assert "training run folder" in last
