"""Hostile and clumsy clients against the real ``gan-serve`` process (127.0.0.1 only, bounded
in count and time): bodies that trickle in, keyless floods, large bodies, disconnects
(issue 9 #1, #2, #4, #5)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.service import imagefiles as F
from tests.service.conftest import ServerProcess
from tests.service.test_load import metric

pytestmark = pytest.mark.slow

SLOW_SOCKETS = 70  # more than the 64 admission slots (GAN_QUEUE_SIZE)
DEADLINE_S = 3.0  # GAN_BODY_DEADLINE_S for these servers


def _address(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    return parts.hostname, parts.port


def _head(path: str, length: int, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _status(sock: socket.socket, timeout: float) -> int:
    """The status code of the response on ``sock`` (0 if the server closed without one)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"\r\n" not in data:
            got = sock.recv(4096)
            if not got:
                break
            data += got
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


@contextlib.contextmanager
def trickling(address: tuple[str, int], head: bytes, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that send ``head`` and then one byte of body every 0.25 s."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(0.25):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b" ")

    thread = threading.Thread(target=trickle, daemon=True)
    try:
        for _ in range(count):
            sock = socket.create_connection(address, timeout=10)
            sock.sendall(head)
            socks.append(sock)
        thread.start()
        yield socks
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(10)
        for sock in socks:
            sock.close()


@pytest.mark.parametrize("api_key", [None, "s3cret-key"])
def test_bodies_that_trickle_in_do_not_starve_normal_requests(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path, api_key: str | None
) -> None:
    env = {"GAN_BODY_DEADLINE_S": str(DEADLINE_S)}
    auth: dict[str, str] = {}
    if api_key is not None:
        env["GAN_API_KEY"] = api_key
        auth = {"Authorization": f"Bearer {api_key}"}
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0", env=env)
    base = server.wait_started()
    address = _address(base)
    # With a key these trickle with it: the worst case; keyless ones are tried below.
    head = _head("/generate", 400, "".join(f"{k}: {v}\r\n" for k, v in auth.items()))
    started = time.monotonic()
    with (
        trickling(address, head, SLOW_SOCKETS) as slow,
        httpx.Client(base_url=base, timeout=10, headers=auth) as http,
    ):
        time.sleep(0.5)  # every slow body is being read now
        latencies = []
        for seed in range(5):
            start = time.perf_counter()
            r = http.post("/generate", json={"seed": seed})
            latencies.append(time.perf_counter() - start)
            assert r.status_code == 200, r.text
        assert max(latencies) < 1.0, latencies
        assert metric(http.get("/metrics").text, "gan_requests_in_progress") == 0  # no slot held
        assert time.monotonic() - started < DEADLINE_S - 0.5  # all of it while they trickled
        if api_key is not None:  # keyless: 401 at once, the body is never waited for
            anonymous = socket.create_connection(address, timeout=10)
            with anonymous:
                anonymous.sendall(_head("/generate", 400))
                start = time.perf_counter()
                assert _status(anonymous, 5) == 401
                assert time.perf_counter() - start < 1.0
        # Past the deadline every trickling body is answered 408, though bytes kept coming.
        statuses = [_status(sock, DEADLINE_S + 10) for sock in slow]
        assert statuses == [408] * SLOW_SOCKETS
        text = http.get("/metrics").text
    rejected = metric(text, "gan_rejected_requests_total", route="/generate", reason="body_timeout")
    assert rejected == SLOW_SOCKETS
    assert server.stop() == 0
    assert not any("Traceback" in line for line in server.lines)


def test_large_bodies_do_not_stall_the_event_loop(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    """/generate bodies are capped near what a valid request needs (here 160 KiB: parsing it
    takes milliseconds), and PNGs of few pixels but many bytes are decoded off the loop."""
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0")
    base = server.wait_started()
    with httpx.Client(base_url=base, timeout=30) as http:
        limit = http.get("/info").json()["limits"]["max_generate_body_bytes"]
    # The largest /generate body allowed: ~80,000 numbers to parse and validate (a 422: the row
    # is not z_dim long); and a 28x28 PNG padded with 100,000 empty chunks (1.2 MB), which
    # took ~0.3 s to decode inline.
    numbers = (limit - 64) // 2
    z_body = b'{"z": [[' + b"0," * numbers + b'0]], "format": "json"}'
    assert len(z_body) <= limit
    spam = F.chunk_spam_png(100_000)
    health_ms: list[float] = []
    statuses: list[tuple[str, int]] = []

    async def run() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            done = asyncio.Event()

            async def health() -> None:
                while not done.is_set():
                    start = time.perf_counter()
                    r = await client.get("/health")
                    health_ms.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200
                    await asyncio.sleep(0.02)

            async def generate() -> None:
                r = await client.post(
                    "/generate", content=z_body, headers={"Content-Type": "application/json"}
                )
                statuses.append(("generate", r.status_code))

            async def score() -> None:
                r = await client.post("/score", files=[("files", ("spam.png", spam, "image/png"))])
                statuses.append(("score", r.status_code))

            watcher = asyncio.create_task(health())
            await asyncio.sleep(0.1)
            for _ in range(2):  # twice: four of each at once
                await asyncio.gather(*[generate() for _ in range(4)], *[score() for _ in range(4)])
            done.set()
            await asyncio.wait_for(watcher, 10)

    asyncio.run(asyncio.wait_for(run(), 120))
    assert sorted(set(statuses)) == [("generate", 422), ("score", 200)], statuses
    assert len(statuses) == 16
    assert health_ms and max(health_ms) < 500, max(health_ms)
    assert server.stop() == 0


def test_a_client_that_leaves_mid_body_is_logged_as_499(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0")
    address = _address(server.wait_started())
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(_head("/generate", 100, "X-Request-ID: left-early\r\n") + b'{"seed": ')
        time.sleep(0.2)
    line = server.wait_for(
        lambda r: r.get("request_id") == "left-early" and r.get("msg") == "request"
    )
    assert line["status"] == 499 and line["path"] == "/generate"
    with httpx.Client(base_url=f"http://{address[0]}:{address[1]}", timeout=10) as http:
        text = http.get("/metrics").text
    left = metric(text, "gan_http_requests_total", method="POST", route="/generate", status="499")
    assert left == 1
    assert server.stop() == 0
