"""Bodies before admission, the key before the body, body limits and deadlines, disconnects
(issue 9 #1, #2, #4, #5), in process: the middleware alone, and the app through ASGI calls."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any

import anyio
import pytest
from fastapi.testclient import TestClient

from service.admission import (
    GENERATE_BODY_SLACK,
    GENERATE_BYTES_PER_NUMBER,
    BodyLimit,
    BodyLimits,
    ModelRequestMiddleware,
)
from service.metrics import Metrics
from tests.service import imagefiles as F
from tests.service.conftest import ClientFactory
from tests.service.test_batching import block_forward, in_thread, record_batches, sample, wait_until

KEY = {"Authorization": "Bearer s3cret-key"}
JSON_TYPE = {"Content-Type": "application/json"}


def answered(client: TestClient, status: int, route: str = "/generate") -> float:
    """gan_http_requests_total for POST ``route`` with ``status``."""
    return sample(client, "gan_http_requests_total", route=route, method="POST", status=str(status))


# ----------------------------------------------------------------------------------------------
# the middleware alone, around an app that reads the whole body
# ----------------------------------------------------------------------------------------------

Step = tuple[float, dict[str, Any]]  # (delay before receive() returns, message)


def _chunk(data: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


def _scope(
    path: str = "/score", headers: list[tuple[bytes, bytes]] | None = None
) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "headers": headers or []}


class Harness:
    """ModelRequestMiddleware around an app that reads its body and answers 200, for requests
    driven by scripted ``receive`` steps."""

    def __init__(self, **options: Any) -> None:
        settings: dict[str, Any] = {
            "paths": ("/score", "/generate"),
            "queue_size": 4,
            "limits": BodyLimits(10_000),
            "body_timeout_s": 1.0,
            "body_deadline_s": 5.0,
            "buffer_bytes": 100_000,
            "metrics": Metrics(model_routes=("/score", "/generate")),
        }
        settings.update(options)
        self.metrics: Metrics = settings["metrics"]
        self.bodies: list[bytes] = []
        self.sent: list[dict[str, Any]] = []
        self.mw = ModelRequestMiddleware(self._app, **settings)

    async def _app(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def request(self, steps: list[Step], scope: dict[str, Any] | None = None) -> int | None:
        """Run one request; the status it got (None: no response)."""
        queue = list(steps)
        self.sent = sent = []

        async def receive() -> dict[str, Any]:
            if not queue:
                await anyio.sleep_forever()
            delay, msg = queue.pop(0)
            await anyio.sleep(delay)
            return msg

        async def send(msg: MutableMapping[str, Any]) -> None:
            sent.append(dict(msg))

        await self.mw(scope or _scope(), receive, send)
        return int(sent[0]["status"]) if sent else None

    def rejected(self, reason: str, path: str = "/score") -> float:
        value = self.metrics.registry.get_sample_value(
            "gan_rejected_requests_total", {"route": path, "reason": reason}
        )
        return 0.0 if value is None else float(value)


def run(main: Callable[[], Awaitable[None]]) -> None:
    anyio.run(main)


def test_a_body_being_read_holds_no_admission_slot() -> None:
    h = Harness(queue_size=1)
    slow = [(0.0, _chunk(b"x")), *[(0.05, _chunk(b"x")) for _ in range(10)]]
    slow.append((0.05, _chunk(b"", False)))
    results: dict[str, Any] = {}

    async def main() -> None:
        results["start"] = anyio.current_time()
        async with anyio.create_task_group() as tg:

            async def trickle(i: int) -> None:
                await anyio.sleep(0.01 * i)  # they finish one after the other
                results[f"slow{i}"] = await h.request(list(slow))

            for i in range(3):  # three bodies trickling in over 0.55 s, one slot
                tg.start_soon(trickle, i)
            await anyio.sleep(0.1)
            assert h.mw.in_progress == 0 and 3 <= h.mw.buffered < 33  # reading: no slot
            results["normal"] = await h.request([(0.0, _chunk(b"{}", False))])
            results["normal_at"] = anyio.current_time()

    run(main)
    assert results["normal"] == 200 and h.bodies[0] == b"{}"
    assert results["normal_at"] - results["start"] < 0.5  # served while the others trickled
    assert [results[f"slow{i}"] for i in range(3)] == [200, 200, 200]  # served when complete
    assert h.mw.in_progress == 0 and h.mw.buffered == 0


def test_the_whole_body_has_a_deadline_whatever_the_pace() -> None:
    h = Harness(body_timeout_s=1.0, body_deadline_s=0.3)
    steps = [(0.05, _chunk(b"x")) for _ in range(100)]  # a byte every 50 ms: never stalls

    async def main() -> None:
        with anyio.fail_after(5):
            assert await h.request(steps, _scope(headers=[(b"content-length", b"400")])) == 408

    run(main)
    detail = json.loads(h.sent[1]["body"])["detail"]
    assert "GAN_BODY_DEADLINE_S" in detail and "of 400 bytes came" in detail
    assert (b"connection", b"close") in h.sent[0]["headers"]
    assert h.rejected("body_timeout") == 1 and h.bodies == [] and h.mw.buffered == 0


def test_a_stalled_chunk_is_408_with_its_own_message() -> None:
    h = Harness(body_timeout_s=0.1, body_deadline_s=5.0)

    async def main() -> None:
        assert await h.request([(0.0, _chunk(b"x")), (1.0, _chunk(b"x", False))]) == 408

    run(main)
    assert "GAN_BODY_TIMEOUT_S" in json.loads(h.sent[1]["body"])["detail"]


def test_bodies_in_transit_share_a_byte_budget() -> None:
    h = Harness(buffer_bytes=1500)
    results: dict[str, Any] = {}

    async def main() -> None:
        async with anyio.create_task_group() as tg:

            async def big() -> None:  # 1000 bytes in, the rest comes later
                results["big"] = await h.request(
                    [(0.0, _chunk(b"a" * 1000)), (0.3, _chunk(b"a" * 10, False))]
                )

            tg.start_soon(big)
            await anyio.sleep(0.05)
            results["second"] = await h.request([(0.0, _chunk(b"b" * 1000, False))])
            results["small"] = await h.request([(0.0, _chunk(b"{}", False))])

    run(main)
    assert results == {"big": 200, "second": 503, "small": 200}
    assert h.rejected("body_buffer_full") == 1 and h.mw.buffered == 0


def test_route_limits_by_content_length_and_by_counting() -> None:
    limits = BodyLimits(10_000)
    limits.set("/generate", BodyLimit(100, "GAN_MAX_GENERATE_BODY_BYTES", "send less"))
    h = Harness(limits=limits)
    details: list[str] = []

    async def main() -> None:
        declared = _scope("/generate", [(b"content-length", b"101")])
        with anyio.fail_after(5):
            assert await h.request([], declared) == 413  # receive() would block: nothing read
        details.append(json.loads(h.sent[1]["body"])["detail"])
        chunks = [(0.0, _chunk(b"x" * 60)), (0.0, _chunk(b"x" * 60))]
        assert await h.request(chunks, _scope("/generate")) == 413
        details.append(json.loads(h.sent[1]["body"])["detail"])
        assert await h.request([(0.0, _chunk(b"x" * 200, False))], _scope("/score")) == 200

    run(main)
    want = "request body is larger than 100 bytes (GAN_MAX_GENERATE_BODY_BYTES); send less"
    assert details == [want, want]
    assert h.bodies == [b"x" * 200] and h.mw.buffered == 0


class FakeArrival:
    def __init__(self, log: list[str], path: str) -> None:
        self.log, self.path = log, path

    def settle(self) -> None:
        self.log.append(f"settled {self.path}")


def test_a_body_on_its_way_is_announced_to_the_batch_worker_briefly() -> None:
    """So that requests being received share a forward pass with those queued; a slow body is
    announced for ANNOUNCE_FOR_S only, and every announcement ends before the route runs."""
    from contextlib import contextmanager

    from service.admission import ANNOUNCE_FOR_S

    log: list[str] = []

    @contextmanager
    def announce(path: str, model: str | None = None) -> Iterator[FakeArrival]:
        log.append(f"announced {path}")
        arrival = FakeArrival(log, path)
        try:
            yield arrival
        finally:
            arrival.settle()

    h = Harness(announce=announce)
    original_app = h.mw.app

    async def app(scope: Any, receive: Any, send: Any) -> None:
        log.append("route")
        await original_app(scope, receive, send)

    h.mw.app = app

    async def main() -> None:
        assert await h.request([(0.0, _chunk(b"{}", False))], _scope("/generate")) == 200
        slow = [(0.0, _chunk(b"x")), (ANNOUNCE_FOR_S * 3, _chunk(b"y", False))]
        assert await h.request(slow) == 200

    run(main)
    assert log[:3] == ["announced /generate", "settled /generate", "route"]
    # The slow one: settled by the timer while its body still came, then again (no-op) on exit.
    assert log[3:] == ["announced /score", "settled /score", "settled /score", "route"]


def test_a_client_gone_while_its_body_arrives_gets_no_answer() -> None:
    h = Harness()

    async def main() -> None:
        from starlette.requests import ClientDisconnect

        with pytest.raises(ClientDisconnect):
            await h.request([(0.0, _chunk(b"x")), (0.0, {"type": "http.disconnect"})])

    run(main)
    assert h.sent == [] and h.bodies == [] and h.mw.buffered == 0


# ----------------------------------------------------------------------------------------------
# the API key comes first
# ----------------------------------------------------------------------------------------------


def test_keyless_requests_get_401_before_their_body_is_read(make_client: ClientFactory) -> None:
    client = make_client(api_key="s3cret-key")
    malformed = client.post("/generate", content="{not json", headers=JSON_TYPE)
    assert malformed.status_code == 401, malformed.text  # not 422: the body is never parsed
    assert "GAN_API_KEY" in malformed.json()["detail"]
    assert malformed.headers["WWW-Authenticate"].startswith("Bearer")
    huge = client.post("/generate", content=b"[" * 10_000_000, headers=JSON_TYPE)
    assert huge.status_code == 401
    score = client.post("/score", content=b"junk", headers={"Content-Type": "image/png"})
    assert score.status_code == 401
    # With the key the same malformed body is a 422 naming the problem.
    keyed = client.post("/generate", content="{not json", headers={**JSON_TYPE, **KEY})
    assert keyed.status_code == 422
    assert answered(client, 401) == 2  # counted under their route, not as unmatched


def test_a_keyless_request_never_has_its_body_read(make_client: ClientFactory) -> None:
    """Through ASGI: receive() would hang forever, yet the answer is 401 at once."""
    client = make_client(api_key="s3cret-key")
    sent: list[dict[str, Any]] = []

    async def call() -> None:
        async def receive() -> dict[str, Any]:
            raise AssertionError("the body of a keyless request was read")

        async def send(msg: MutableMapping[str, Any]) -> None:
            sent.append(dict(msg))

        scope = _asgi_scope("/generate", [(b"content-length", b"10000000")])
        with anyio.fail_after(5):
            await client.app(scope, receive, send)

    client.portal.call(call)  # type: ignore[union-attr]
    assert sent[0]["status"] == 401


def _asgi_scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }


# ----------------------------------------------------------------------------------------------
# /generate's own body limit, and what /info says about it
# ----------------------------------------------------------------------------------------------


def test_generate_body_limit_is_sized_from_the_model(make_client: ClientFactory) -> None:
    client = make_client()
    info = client.get("/info").json()
    expected = 64 * info["z_dim"] * GENERATE_BYTES_PER_NUMBER + GENERATE_BODY_SLACK
    assert info["limits"]["max_generate_body_bytes"] == expected
    assert info["limits"]["body_deadline_s"] == 30
    # The largest valid request fits, pretty-printed: 64 rows of z_dim numbers.
    rows = [[-0.12345678901234567] * info["z_dim"] for _ in range(64)]
    big = json.dumps({"z": rows, "format": "json"}, indent=2)
    assert len(big) < expected
    assert client.post("/generate", content=big, headers=JSON_TYPE).status_code == 200
    over = client.post("/generate", content=b" " * (expected + 1), headers=JSON_TYPE)
    assert over.status_code == 413 and "GAN_MAX_GENERATE_BODY_BYTES" in over.json()["detail"]
    # /score keeps GAN_MAX_BODY_BYTES.
    padded = F.GOOD["gray_png"]() + b"\0" * expected
    score = client.post("/score", content=padded, headers={"Content-Type": "image/png"})
    assert score.status_code == 200


def test_generate_body_limit_setting_and_ceiling(make_client: ClientFactory) -> None:
    client = make_client(max_generate_body_bytes=2048)
    assert client.get("/info").json()["limits"]["max_generate_body_bytes"] == 2048
    r = client.post("/generate", content=b" " * 3000, headers=JSON_TYPE)
    assert r.status_code == 413 and "2048 bytes (GAN_MAX_GENERATE_BODY_BYTES)" in r.json()["detail"]
    capped = make_client(max_body_bytes=4096, max_generate_body_bytes=8192)
    assert capped.get("/info").json()["limits"]["max_generate_body_bytes"] == 4096


# ----------------------------------------------------------------------------------------------
# a client that goes away: 499, and no forward pass for it
# ----------------------------------------------------------------------------------------------


def test_a_client_gone_while_waiting_for_the_model_costs_no_forward(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    engine = client.app.state.engine  # type: ignore[attr-defined]
    sizes = record_batches(engine, "generator")
    entered, release = block_forward(engine, "generator")
    first_thread, first = in_thread(lambda: client.post("/generate", json={"seed": 1}))
    gone: dict[str, anyio.Event] = {}
    sent: list[dict[str, Any]] = []
    body = b'{"seed": 2, "n": 3, "format": "grid"}'

    async def call() -> None:
        gone["event"] = anyio.Event()
        given = False

        async def receive() -> dict[str, Any]:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone["event"].wait()
            return {"type": "http.disconnect"}

        async def send(msg: MutableMapping[str, Any]) -> None:
            sent.append(dict(msg))

        scope = _asgi_scope("/generate", [(b"content-length", str(len(body)).encode())])
        await client.app(scope, receive, send)

    portal = client.portal  # type: ignore[union-attr]
    try:
        assert entered.wait(10)
        second = portal.start_task_soon(call)
        wait_until(lambda: engine.scheduler.queued_rows("generator") == 3)  # queued behind seed 1
        portal.call(lambda: gone["event"].set())  # the client disconnects
        second.result(10)
        assert engine.scheduler.queued_jobs("generator") == 0  # its work was dropped
    finally:
        release.set()
        first_thread.join(30)
    assert first["r"].status_code == 200
    assert sent == []  # nobody to answer
    assert sizes == [1]  # one forward: the first request's; none for the three dropped images
    assert answered(client, 499) == 1 and answered(client, 400) == 0
