"""Pure ASGI middleware: request ids + access log + last-resort 500s, and the body-size limit.

Order (outermost first), set up in :func:`service.app.create_app`::

    RequestContextMiddleware  request id, X-Request-ID, JSON access log, JSON 500 on any crash,
                              request count and latency metrics; 499 for clients that went away
    CORSMiddleware            only when GAN_CORS_ORIGINS is set
    ApiKeyMiddleware          only with GAN_API_KEY: 401 for key-protected routes, from the
                              headers alone (service.auth)
    ModelRequestMiddleware    /generate + /score: the whole body first (size, deadline, buffer),
                              then at most GAN_QUEUE_SIZE admitted; 499 on disconnects
                              (service.admission)
    BodySizeLimitMiddleware   every other request: 413 by Content-Length or by counting body
                              bytes; 408 on stalls and past the deadline
    (FastAPI routing, exception handlers, routes)
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from service.metrics import Metrics

access_logger = logging.getLogger("service.access")
error_logger = logging.getLogger("service.error")

REQUEST_ID_HEADER = "X-Request-ID"
_RID_KEY = b"x-request-id"
_NOSNIFF_KEY = b"x-content-type-options"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


if sys.version_info >= (3, 11):

    async def within(seconds: float, receive: Receive) -> Message:
        """``await receive()``, or TimeoutError after ``seconds`` (asyncio.timeout: a few
        microseconds per call, several times cheaper than anyio's cancel scopes)."""
        async with asyncio.timeout(seconds):
            return await receive()

else:  # pragma: no cover - Python 3.10

    async def within(seconds: float, receive: Receive) -> Message:
        with anyio.fail_after(seconds):
            return await receive()


#: A refused body (413) is read and discarded up to this many bytes before the answer, so that
#: a client still sending it is not reset before it reads the status (nginx's lingering close).
#: Bodies declared larger are answered at once.
DRAIN_MAX_BYTES = 64 * 1024 * 1024
#: The longest a refused body is drained for.
DRAIN_MAX_S = 10.0


def expects_continue(scope: Scope) -> bool:
    """The client sent ``Expect: 100-continue``: it sends no body before the server reads."""
    return any(k == b"expect" and v.lower() == b"100-continue" for k, v in scope.get("headers", ()))


async def drain(
    scope: Scope,
    receive: Receive,
    *,
    chunk_timeout_s: float,
    deadline_s: float = DRAIN_MAX_S,
    declared: int | None = None,
    max_bytes: int = DRAIN_MAX_BYTES,
) -> None:
    """Read and discard the rest of a refused request body, within bounds.

    Answering 413 and closing while the client is still sending makes the kernel reset the
    connection, and most clients then report the reset instead of the status. Reading the rest
    first (at most ``max_bytes``, ``deadline_s`` in all and ``chunk_timeout_s`` per chunk, and
    never for a client waiting for ``100 Continue``) lets the answer arrive; nothing is kept.
    """
    if expects_continue(scope) or (declared is not None and declared > max_bytes):
        return
    loop = asyncio.get_running_loop()
    end = loop.time() + min(deadline_s, DRAIN_MAX_S)
    seen = 0
    while True:
        left = min(chunk_timeout_s, end - loop.time())
        if left <= 0:
            return
        try:
            message = await within(left, receive)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False) or seen > max_bytes:
            return


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    """Send a complete JSON response through a raw ASGI ``send``."""
    payload = json.dumps(body).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


class RequestContextMiddleware:
    """Request id, one JSON access-log line per request, and a JSON 500 for any crash.

    An incoming ``X-Request-ID`` is reused when it is 1..128 characters of ``[A-Za-z0-9._:@/+=-]``;
    otherwise a new one is made. It is stored in ``scope["state"]["request_id"]`` and returned in
    the ``X-Request-ID`` response header. An exception that escapes the app is logged with the
    request id and its traceback, and answered with a JSON 500 that carries no stack trace.

    For the lifespan, a failed start-up with a known cause (``app.state.startup_error``) is
    reported by that one-line message instead of a traceback.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics | None = None, max_header_bytes: int | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.max_header_bytes = max_header_bytes

    def _head_too_large(self, scope: Scope) -> bool:
        """The request target and headers, as parsed, exceed ``max_header_bytes`` (the
        protocol, service.protocols, has already bounded heads that arrive in pieces)."""
        if self.max_header_bytes is None:
            return False
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        for key, value in scope.get("headers", ()):
            size += len(key) + len(value) + 4
        return size > self.max_header_bytes

    async def _refuse_head(self, scope: Scope, receive: Receive, send: Send) -> None:
        from service.protocols import DETAIL

        await send_json(
            send,
            431,
            {"detail": DETAIL.format(limit=self.max_header_bytes)},
            {"Connection": "close"},
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        incoming = None
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SANE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        rid_value = request_id.encode("latin-1")
        start = time.perf_counter()
        status: int | None = None
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                # Raw header list (MutableHeaders re-parses it on every access).
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != _RID_KEY]
                headers.append((_RID_KEY, rid_value))
                if not any(k.lower() == _NOSNIFF_KEY for k, _ in headers):
                    headers.append((_NOSNIFF_KEY, b"nosniff"))
                message = {**message, "headers": headers}
            await send(message)

        access_logger.debug(
            "request start",
            extra={
                "request_id": request_id,
                "method": scope.get("method"),
                "path": scope.get("path"),
            },
        )
        app = self._refuse_head if self._head_too_large(scope) else self.app
        try:
            await app(scope, receive, send_wrapper)
        except ClientDisconnect:
            status = status or 499  # nginx's "client closed request": nobody is listening
        except Exception:
            error_logger.exception(
                "unhandled error while serving %s %s",
                scope.get("method"),
                scope.get("path"),
                extra={"request_id": request_id},
            )
            if not response_started:
                status = 500
                await send_json(
                    send,
                    500,
                    {
                        "detail": "internal server error; it has been logged: quote the request "
                        f"id {request_id} when reporting it",
                        "request_id": request_id,
                    },
                    {REQUEST_ID_HEADER: request_id, "X-Content-Type-Options": "nosniff"},
                )
        finally:
            elapsed = time.perf_counter() - start
            client = scope.get("client")
            access_logger.info(
                "request",
                extra={
                    "request_id": request_id,
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status,
                    "latency_ms": round(elapsed * 1000.0, 3),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                },
            )
            if self.metrics is not None:
                route = (
                    getattr(scope.get("route"), "path", None)
                    or scope["state"].get("route")  # set by the auth and admission middleware
                    or "unmatched"
                )
                labels = (route, str(scope.get("method")), str(status))
                self.metrics.requests.labels(*labels).inc()
                self.metrics.latency.labels(*labels).observe(elapsed)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Message) -> None:
            if message["type"] == "lifespan.startup.failed":
                app = scope.get("app")
                reason = getattr(getattr(app, "state", None), "startup_error", None)
                if reason:
                    message = {"type": message["type"], "message": reason}
            await send(message)

        await self.app(scope, receive, send_wrapper)


class BodySizeLimitMiddleware:
    """Refuse request bodies above ``max_body_bytes`` with 413, chunked uploads included.

    A declared ``Content-Length`` above the limit is refused before anything is read. Otherwise
    the bytes of ``http.request`` messages are counted as the app reads them, and the read that
    crosses the limit raises a 413 ``HTTPException`` (FastAPI and our routes turn it into the
    response; if it escapes, this middleware answers it). A body whose next chunk does not
    arrive within ``body_timeout_s``, or that is not complete ``body_deadline_s`` after the
    request came, is answered with 408 the same way. ``POST`` requests to ``exempt_paths`` pass
    untouched: :class:`service.admission.ModelRequestMiddleware` has read them already.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout_s: float,
        body_deadline_s: float | None = None,
        exempt_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.body_deadline_s = body_deadline_s
        self.exempt_paths = exempt_paths

    def _too_large(self) -> HTTPException:
        return HTTPException(
            413,
            f"request body is larger than {self.max_body_bytes} bytes (GAN_MAX_BODY_BYTES); "
            "send fewer or smaller images",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            scope.get("method") == "POST" and scope.get("path") in self.exempt_paths
        ):
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_json(send, 400, {"detail": "Content-Length is not an integer"})
                    return
                if declared > self.max_body_bytes:
                    exc = self._too_large()
                    await drain(
                        scope,
                        receive,
                        chunk_timeout_s=self.body_timeout_s,
                        deadline_s=self.body_deadline_s or DRAIN_MAX_S,
                        declared=declared,
                    )
                    await send_json(send, 413, {"detail": exc.detail}, {"Connection": "close"})
                    return
        received = 0
        body_complete = False
        response_started = False
        deadline = None
        if self.body_deadline_s is not None:
            deadline = asyncio.get_running_loop().time() + self.body_deadline_s

        async def limited_receive() -> Message:
            nonlocal received, body_complete
            if body_complete:
                return await receive()
            timeout = self.body_timeout_s
            if deadline is not None:
                timeout = min(timeout, deadline - asyncio.get_running_loop().time())
            try:
                if timeout <= 0:
                    raise TimeoutError
                message = await within(timeout, receive)
            except TimeoutError:
                if timeout < self.body_timeout_s:
                    raise HTTPException(
                        408,
                        f"the request body did not arrive within {self.body_deadline_s:g} s "
                        "(GAN_BODY_DEADLINE_S); send it faster or smaller",
                    ) from None
                raise HTTPException(
                    408,
                    f"the request body stalled: no data for {self.body_timeout_s:g} s "
                    "(GAN_BODY_TIMEOUT_S); send the whole body without pauses",
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise self._too_large()
                if not message.get("more_body", False):
                    body_complete = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except HTTPException as exc:
            if exc.status_code not in (408, 413) or response_started:
                raise
            await send_json(send, exc.status_code, {"detail": exc.detail}, {"Connection": "close"})
