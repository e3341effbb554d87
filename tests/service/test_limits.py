"""Request heads and refused bodies against the real ``gan-serve`` process (issue 21): heads
past GAN_MAX_HEADER_BYTES get a JSON 431 on both HTTP parsers, and a body past its limit gets a
413 that the client can read while it is still sending (never a connection reset)."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import ServerProcess
from tests.service.test_slow_clients import _address

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest, ckpt_dir: Path) -> Iterator[str]:
    proc = ServerProcess(
        ["--checkpoint", str(ckpt_dir), "--port", "0"], {"GAN_HTTP": request.param}
    )
    try:
        yield proc.wait_started()
        assert proc.stop() == 0
        assert not any("Traceback" in line for line in proc.lines), "\n".join(proc.lines)
    finally:
        proc.kill()


def _response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response read from ``sock`` until it closes."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while True:
            got = sock.recv(65536)
            if not got:
                break
            data += got
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in lines[1:])
                if len(body) >= int(headers.get("content-length", "-1")) >= 0:
                    return int(lines[0].split(" ", 2)[1]), headers, body
    raise AssertionError(f"no complete response; got {data[:200]!r}")


def test_small_heads_pass(server: str) -> None:
    headers = {f"x-fill-{i}": "v" * 100 for i in range(60)}  # ~7 KB: under 16 KiB
    r = httpx.get(server + "/health", headers=headers, timeout=10)
    assert r.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"x-big": "a" * 200_000}, {f"x-fill-{i}": "b" * 1000 for i in range(200)}],
    ids=["one-200KB-header", "200-headers-of-1KB"],
)
def test_large_heads_get_431(server: str, headers: dict[str, str]) -> None:
    r = httpx.get(server + "/health", headers=headers, timeout=10)
    assert r.status_code == 431
    assert "GAN_MAX_HEADER_BYTES" in r.json()["detail"]
    assert r.headers["connection"] == "close"
    assert httpx.get(server + "/health", timeout=10).status_code == 200  # still serving


def test_a_long_request_line_gets_431(server: str) -> None:
    r = httpx.get(server + "/health?q=" + "c" * 40_000, timeout=10)
    assert r.status_code == 431


def test_a_head_that_never_ends_is_cut_off_at_the_limit(server: str) -> None:
    """Header bytes in small pieces, never the blank line: refused once past the limit, not
    buffered for ever."""
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        sent = 0
        status = None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            while sent < 1_000_000:
                sock.sendall(b"d" * 4096)
                sent += 4096
                sock.settimeout(0.01)
                try:
                    got = sock.recv(65536)
                except TimeoutError:
                    continue
                status = int(got.split(b" ", 2)[1])
                break
        assert status == 431
        assert sent < 100_000  # cut off near 16 KiB, not after a megabyte


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_10MB_body_to_generate_gets_a_readable_413(server: str, chunked: bool) -> None:
    body = json.dumps({"z": [[0.0] * 100] * 10_000, "pad": "x" * 5_000_000}).encode()
    assert len(body) > 9_000_000
    if chunked:
        content: bytes | Iterator[bytes] = (body[i : i + 65536] for i in range(0, len(body), 65536))
    else:
        content = body
    r = httpx.post(
        server + "/generate",
        content=content,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code == 413
    assert "GAN_MAX_GENERATE_BODY_BYTES" in r.json()["detail"]


def test_an_11MB_upload_to_score_gets_a_readable_413(server: str) -> None:
    r = httpx.post(
        server + "/score",
        files={"files": ("big.png", b"\x89PNG" + b"\0" * 11_000_000, "image/png")},
        timeout=30,
    )
    assert r.status_code == 413
    assert "GAN_MAX_BODY_BYTES" in r.json()["detail"]


def test_a_raw_client_still_sending_reads_the_413(server: str) -> None:
    """The client keeps writing its whole declared body before it reads: it must get the
    status, not a reset (the server reads and discards the rest first)."""
    size = 10 * 1024 * 1024
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(size).encode() + b"\r\n\r\n"
        )
        errors: list[BaseException] = []

        def write() -> None:
            try:
                sock.sendall(b" " * size)
            except OSError as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        writer.join(30)
        assert not errors, errors
        status, _, body = _response(sock)
    assert status == 413
    assert "GAN_MAX_GENERATE_BODY_BYTES" in json.loads(body)["detail"]


def test_expect_100_continue_is_answered_without_waiting_for_the_body(server: str) -> None:
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10485760\r\nExpect: 100-continue\r\n\r\n"
        )
        start = time.perf_counter()
        status, _, _ = _response(sock)
    assert status == 413
    assert time.perf_counter() - start < 2.0


def test_bodies_far_too_large_are_answered_at_once(server: str) -> None:
    """Declared beyond what is worth draining (64 MiB): 413 without reading anything."""
    with socket.create_connection(_address(server), timeout=10) as sock:
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        start = time.perf_counter()
        status, _, _ = _response(sock)
    assert status == 413
    assert time.perf_counter() - start < 2.0


def test_worker_processes_refuse_large_heads_too(ckpt_dir: Path) -> None:
    """GAN_WORKERS > 1: uvicorn imports the limited protocol by name in every worker."""
    proc = ServerProcess(
        ["--checkpoint", str(ckpt_dir), "--port", "0"],
        {"GAN_WORKERS": "2", "GAN_MAX_HEADER_BYTES": "4096"},
    )
    try:
        base = proc.wait_started()
        proc.wait_for(
            lambda r: (
                r.get("msg") == "Application startup complete."
                and sum(1 for x in proc.records() if x.get("msg") == r["msg"]) >= 2
            )
        )
        for _ in range(4):  # either worker may answer
            r = httpx.get(base + "/health", headers={"x-big": "e" * 5000}, timeout=30)
            assert r.status_code == 431
            assert "4096 bytes" in r.json()["detail"]
        assert httpx.get(base + "/health", headers={"x-ok": "e" * 3000}).status_code == 200
        assert proc.stop() == 0  # SIGTERM: the parent stops its workers (a kill would orphan them)
    finally:
        proc.kill()
