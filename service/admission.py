"""Model requests (``POST`` to the routes' ``ENDPOINTS``): the whole body first, then a slot.

A request to ``/generate`` or ``/score`` goes through :class:`ModelRequestMiddleware`:

1. all ``GAN_QUEUE_SIZE`` admission slots taken: 503 with ``Retry-After`` at once, nothing read;
2. a ``Content-Length`` above the route's limit (:class:`BodyLimits`): 413 at once;
3. the body is read into memory WITHOUT a slot (announced to the batch worker, which may wait
   GAN_MAX_DELAY_MS for it, during its first 50 ms): 413 when it grows past the limit; 408 when a
   chunk does not come within ``GAN_BODY_TIMEOUT_S`` or the whole body within
   ``GAN_BODY_DEADLINE_S``; 503 when the bodies being received at that moment would hold more
   than ``GAN_BODY_BUFFER_BYTES`` together; a client that goes away is logged and counted as
   499. A body that trickles in (a byte a second) therefore holds no slot, almost none of the
   buffer, and at most ``GAN_BODY_DEADLINE_S`` of the server's attention;
4. admission: 503 if the slots filled up meanwhile; else the request holds a slot while its
   images are decoded, wait for the model and run, until its response is sent;
5. the route gets the body as it arrived; if the client disconnects now, the request is
   cancelled: its queued work is dropped before a forward pass is spent on it (a decode already
   in a worker thread finishes first, so the conversion thread limit holds), and it is logged
   and counted as 499 instead of FastAPI's 400.

Memory for bodies is bounded by ``GAN_BODY_BUFFER_BYTES`` while they arrive, plus
``GAN_QUEUE_SIZE`` x the largest body once admitted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.middleware import drain, send_json, within

if TYPE_CHECKING:
    from service.batching import Arrival
    from service.metrics import Metrics
    from service.settings import Settings

#: JSON text per latent number in a /generate body: "-0.12345678901234567, " is 22 bytes; an
#: exponent and pretty-printing (a number per indented line) stay within 32.
GENERATE_BYTES_PER_NUMBER = 32
#: Room in a /generate body for everything but z (seed, format, labels, whitespace).
GENERATE_BODY_SLACK = 64 * 1024

_ADVICE = "send fewer or smaller images"
#: A body being read is announced to the batch worker for at most this long (a body that takes
#: longer will not catch the batch being formed; a slow client must not hold the worker back).
ANNOUNCE_FOR_S = 0.05
#: An admitted request starts watching for its client's disconnect after this long (see
#: ModelRequestMiddleware._run): at most this much of its work is spent for a client that left.
WATCH_AFTER_S = 0.005


@dataclass(frozen=True)
class BodyLimit:
    """The largest body of one route, and what to tell a client that sends more."""

    max_bytes: int
    setting: str = "GAN_MAX_BODY_BYTES"
    advice: str = _ADVICE

    def detail(self) -> str:
        return f"request body is larger than {self.max_bytes} bytes ({self.setting}); {self.advice}"


class BodyLimits:
    """The largest body per model path: GAN_MAX_BODY_BYTES, unless a route sets a lower one
    (``/generate``, once the model is loaded: :func:`generate_body_limit`)."""

    def __init__(self, max_body_bytes: int) -> None:
        self.default = BodyLimit(max_body_bytes)
        self._per_path: dict[str, BodyLimit] = {}

    def __call__(self, path: str) -> BodyLimit:
        return self._per_path.get(path, self.default)

    def set(self, path: str, limit: BodyLimit) -> None:
        self._per_path[path] = limit if limit.max_bytes < self.default.max_bytes else self.default


def generate_body_limit(settings: Settings, z_dim: int) -> BodyLimit:
    """``/generate``'s limit: GAN_MAX_GENERATE_BODY_BYTES, or by default what the largest valid
    request needs (GAN_MAX_IMAGES rows of ``z_dim`` numbers, 32 bytes each, plus 64 KiB); never
    more than GAN_MAX_BODY_BYTES. A /generate body has no use for megabytes, and parsing them
    would hold the event loop."""
    if settings.max_generate_body_bytes is not None:
        size = settings.max_generate_body_bytes
        how = "GAN_MAX_GENERATE_BODY_BYTES"
    else:
        size = settings.max_images * z_dim * GENERATE_BYTES_PER_NUMBER + GENERATE_BODY_SLACK
        how = (
            f"GAN_MAX_GENERATE_BODY_BYTES, by default GAN_MAX_IMAGES={settings.max_images} rows "
            f"of z_dim={z_dim} numbers"
        )
    if size >= settings.max_body_bytes:
        return BodyLimit(settings.max_body_bytes)
    return BodyLimit(size, how, "send fewer or shorter z rows, or fewer digits per number")


def _model_in(scope: Scope) -> str | None:
    """The ``model`` query parameter, if any (the JSON body's is not read yet)."""
    query = scope.get("query_string", b"")
    if b"model=" not in query:
        return None
    from urllib.parse import parse_qs

    values = parse_qs(query.decode("latin-1")).get("model")
    return values[0] if values else None


class _Refused(Exception):
    """A body that will not be read to the end: answer ``status`` and close the connection."""

    def __init__(self, status: int, detail: str, reason: str | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.reason = status, detail, reason


class ModelRequestMiddleware:
    """Read a model request's body before admitting it; admit at most ``queue_size``; watch for
    disconnects while it runs (see the module docstring)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        paths: tuple[str, ...],
        queue_size: int,
        limits: BodyLimits,
        body_timeout_s: float,
        body_deadline_s: float,
        buffer_bytes: int,
        retry_after_s: int = 1,
        metrics: Metrics | None = None,
        announce: Callable[[str, str | None], AbstractContextManager[Arrival | None]] | None = None,
    ) -> None:
        self.app = app
        self.announce = announce
        self.paths = paths
        self.limit = queue_size
        self.limits = limits
        self.body_timeout_s = body_timeout_s
        self.body_deadline_s = body_deadline_s
        self.buffer_bytes = buffer_bytes
        self.retry_after_s = retry_after_s
        self.metrics = metrics
        self.in_progress = 0  # admitted: complete body, not answered yet
        self.buffered = 0  # bytes of the bodies being received now

    # -- answers -----------------------------------------------------------------------------

    def _reject(self, path: str, reason: str | None) -> None:
        if self.metrics is not None and reason is not None:
            self.metrics.rejected.labels(path, reason).inc()

    async def _at_capacity(self, scope: Scope, send: Send) -> None:
        """503 at once. A body not read yet is left to the server, which discards it as it
        comes: closing the connection could reset it before the client reads the 503."""
        self._reject(scope["path"], "queue_full")
        headers = {"Retry-After": str(self.retry_after_s)}
        await send_json(
            send,
            503,
            {
                "detail": f"the server is at capacity: {self.in_progress} requests are in "
                f"progress (GAN_QUEUE_SIZE={self.limit}); retry after {self.retry_after_s} s"
            },
            headers,
        )

    # -- the request -------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") != "POST"
            or scope.get("path") not in self.paths
        ):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        scope.setdefault("state", {})["route"] = path  # metrics label when no route runs
        declared = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(
                        send,
                        400,
                        {"detail": "Content-Length is not an integer"},
                        {"Connection": "close"},
                    )
                    return
        if self.in_progress >= self.limit:  # a burst costs nothing: answered before reading
            await self._at_capacity(scope, send)
            return
        limit = self.limits(path)
        try:
            if declared is not None and declared > limit.max_bytes:
                raise _Refused(413, limit.detail())
            chunks = await self._read_announced(path, receive, limit, declared, _model_in(scope))
        except _Refused as refused:
            self._reject(path, refused.reason)
            if refused.status in (413, 503):  # the client may still be sending: let it finish
                await drain(
                    scope,
                    receive,
                    chunk_timeout_s=self.body_timeout_s,
                    deadline_s=self.body_deadline_s,
                    declared=declared,
                )
            headers = {"Connection": "close"}
            if refused.status == 503:
                headers["Retry-After"] = str(self.retry_after_s)
            await send_json(send, refused.status, {"detail": refused.detail}, headers)
            return
        if self.in_progress >= self.limit:
            await self._at_capacity(scope, send)
            return
        self.in_progress += 1
        if self.metrics is not None:
            self.metrics.in_progress.set(self.in_progress)
        try:
            await self._run(scope, chunks, receive, send)
        finally:
            # The engines the route leased (service.deps.engine_of): the response is sent.
            for release in scope["state"].pop("leases", ()):
                release()
            self.in_progress -= 1
            if self.metrics is not None:
                self.metrics.in_progress.set(self.in_progress)

    async def _read_announced(
        self,
        path: str,
        receive: Receive,
        limit: BodyLimit,
        declared: int | None,
        model: str | None = None,
    ) -> list[bytes]:
        """:meth:`_read_body`, announced to the batch worker (``announce``) for at most
        :data:`ANNOUNCE_FOR_S`: requests on their way share a forward pass with those queued.
        The route announces itself again at once (no await in between)."""
        if self.announce is None:
            return await self._read_body(receive, limit, declared)
        with self.announce(path, model) as arrival:
            if arrival is None:
                return await self._read_body(receive, limit, declared)
            timer = asyncio.get_running_loop().call_later(ANNOUNCE_FOR_S, arrival.settle)
            try:
                return await self._read_body(receive, limit, declared)
            finally:
                timer.cancel()

    async def _read_body(
        self, receive: Receive, limit: BodyLimit, declared: int | None
    ) -> list[bytes]:
        """The body's chunks as they arrived; :class:`_Refused` for 408, 413 and 503, and
        ClientDisconnect when the client goes away."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_deadline_s
        chunks: list[bytes] = []
        size = held = 0
        try:
            while True:
                left = deadline - loop.time()
                try:
                    if left <= 0:
                        raise TimeoutError
                    message = await within(min(self.body_timeout_s, left), receive)
                except TimeoutError:
                    of = f" of {declared}" if declared is not None else ""
                    if deadline - loop.time() <= 0:
                        detail = (
                            f"the request body did not arrive within {self.body_deadline_s:g} s "
                            f"(GAN_BODY_DEADLINE_S; {size}{of} bytes came); send it faster or "
                            "smaller"
                        )
                    else:
                        detail = (
                            f"the request body stalled: no data for {self.body_timeout_s:g} s "
                            f"(GAN_BODY_TIMEOUT_S; {size}{of} bytes came); send the whole body "
                            "without pauses"
                        )
                    raise _Refused(408, detail, "body_timeout") from None
                if message["type"] == "http.disconnect":
                    raise ClientDisconnect()
                chunk: bytes = message.get("body", b"")
                if chunk:
                    size += len(chunk)
                    if size > limit.max_bytes:
                        raise _Refused(413, limit.detail())
                    if self.buffered + len(chunk) > self.buffer_bytes:
                        raise _Refused(
                            503,
                            f"the server is receiving {self.buffered} bytes of request bodies "
                            f"at once (GAN_BODY_BUFFER_BYTES={self.buffer_bytes}); retry after "
                            f"{self.retry_after_s} s",
                            "body_buffer_full",
                        )
                    self.buffered += len(chunk)
                    held += len(chunk)
                    chunks.append(chunk)
                if not message.get("more_body", False):
                    return chunks
        finally:
            self.buffered -= held

    async def _run(self, scope: Scope, chunks: list[bytes], receive: Receive, send: Send) -> None:
        """The app, given ``chunks`` as the body; cancelled if the client disconnects before its
        response is complete (then ClientDisconnect: 499).

        The disconnect watch (a task waiting on ``receive``) starts only if the request is still
        running after :data:`WATCH_AFTER_S`: most requests are answered sooner, and a client
        that left before is noticed at once when it starts.
        """
        replayed = 0
        gone = asyncio.Event()
        answered = False
        disconnected = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed < max(len(chunks), 1):  # the body as it came (an empty one: one b"")
                body = chunks[replayed] if chunks else b""
                replayed += 1
                return {"type": "http.request", "body": body, "more_body": replayed < len(chunks)}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send_wrapper(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True  # before sending: the server may report the end as a disconnect
            await send(message)

        async def watch(cancel: anyio.CancelScope) -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            if not answered:
                disconnected = True
                gone.set()
                cancel.cancel()

        loop = asyncio.get_running_loop()
        watcher: asyncio.Task[None] | None = None

        def start_watching(cancel: anyio.CancelScope) -> None:
            nonlocal watcher
            watcher = loop.create_task(watch(cancel))

        with anyio.CancelScope() as cancel:
            timer = loop.call_later(WATCH_AFTER_S, start_watching, cancel)
            try:
                await self.app(scope, replay, send_wrapper)
            finally:
                timer.cancel()
                if watcher is not None:
                    watcher.cancel()
        if disconnected and cancel.cancelled_caught:
            raise ClientDisconnect()
