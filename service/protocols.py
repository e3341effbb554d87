"""uvicorn's HTTP/1.1 protocols with a bound on the request head: 431 past GAN_MAX_HEADER_BYTES.

uvicorn's httptools protocol accepts request heads of any size (200 KB of headers is answered
200), and its h11 protocol answers an oversized head with a plain-text 400, or not at all when
the head comes in one read. Two checks answer ``431 Request Header Fields Too Large`` with a
JSON ``detail`` and close the connection, as nginx and h11 do at 8-16 KB:

* here, in the protocol: the bytes received while a request head is incomplete, so a head that
  never ends (one header of a gigabyte, sent slowly) is refused once it passes the limit (plus
  at most one read), and the parser's buffer stays bounded;
* exact, in :class:`service.middleware.RequestContextMiddleware`: the request target plus every
  header's name and value as parsed, so a head that came whole in one read (200 headers of 1 KB,
  or one of 200 KB) is refused as surely.

:func:`protocol_class` names the class for ``GAN_HTTP`` (auto, httptools, h11); uvicorn imports
it from that name (``http=``) and builds one per connection, with the limit in its config.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

#: uvicorn's config carries no limit (GAN_MAX_HEADER_BYTES' default then).
DEFAULT_LIMIT = 16 * 1024

#: The 431's detail (a template; the limit is filled in), here and in the middleware.
DETAIL = (
    "the request line and headers are larger than {limit} bytes (GAN_MAX_HEADER_BYTES); "
    "send fewer or shorter headers"
)

#: After the 431, the rest of the refused head is read and discarded (up to this many bytes)
#: before the connection closes, so a client still sending it reads the answer, not a reset.
DISCARD_MAX_BYTES = 1024 * 1024
DISCARD_MAX_S = 5.0


def response_431(limit: int) -> bytes:
    """The complete 431 response, JSON like every other error of the service."""
    body = json.dumps({"detail": DETAIL.format(limit=limit)}).encode()
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class _HeadLimit:
    """Mixed into a uvicorn protocol: raw bytes of incomplete request heads, and the 431.

    The limit travels in uvicorn's config as ``h11_max_incomplete_event_size``, which means
    the same thing to h11 (and, unlike a class attribute, reaches ``GAN_WORKERS`` processes)."""

    transport: asyncio.Transport

    def _limit_init(self, config: Any) -> None:
        self.max_header_bytes: int = config.h11_max_incomplete_event_size or DEFAULT_LIMIT
        self._raw_head = 0  # bytes received while the current request head is incomplete
        self._refused = False

    def _refuse(self) -> None:
        """Answer 431 now; discard the rest of the head as it comes, then close."""
        self._refused = True
        self._discarded = 0
        self._tail = b""
        if not self.transport.is_closing():
            self.transport.write(response_431(self.max_header_bytes))
            # A client that stops sending mid-head is not waited for.
            asyncio.get_running_loop().call_later(DISCARD_MAX_S, self.transport.close)

    def _discard(self, data: bytes) -> None:
        """The refused head's remaining bytes: close at its blank line, or past the budget."""
        self._discarded += len(data)
        seen = self._tail + data
        self._tail = seen[-3:]
        if b"\r\n\r\n" in seen or self._discarded > DISCARD_MAX_BYTES:
            self.transport.close()

    def _head_incomplete(self) -> bool:
        raise NotImplementedError

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        if self._refused:
            self._discard(data)
            return
        if self._head_incomplete():
            self._raw_head += len(data)
        self._feed(data)
        # Still inside a head (this one, or the next request's, counted from zero): refuse it
        # once it has cost more than the limit.
        if not self._head_incomplete():
            self._raw_head = 0
        elif self._raw_head > self.max_header_bytes:
            self._refuse()

    def send_400_response(self, msg: str) -> None:
        # h11 refuses a head past max_incomplete_event_size as a protocol error: a 431 here.
        if self._raw_head > self.max_header_bytes:
            self._refuse()
            return
        super().send_400_response(msg)  # type: ignore[misc]


def _httptools_class() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class LimitedHttpToolsProtocol(_HeadLimit, HttpToolsProtocol):
        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            self._limit_init(config)
            self._in_head = True

        def _head_incomplete(self) -> bool:
            return self._in_head

        def _feed(self, data: bytes) -> None:
            HttpToolsProtocol.data_received(self, data)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._raw_head = 0

    return LimitedHttpToolsProtocol


def _h11_class() -> type:
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(_HeadLimit, H11Protocol):
        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            self._limit_init(config)

        def _head_incomplete(self) -> bool:
            # h11 holds a request head until it is complete: its peer state is IDLE until then.
            return bool(self.conn.their_state is h11.IDLE)

        def _feed(self, data: bytes) -> None:
            H11Protocol.data_received(self, data)

    return LimitedH11Protocol


#: The classes by name, built on first use so that only the chosen parser is imported (with
#: GAN_HTTP=h11 httptools stays unloaded); uvicorn imports them by these names, also in every
#: GAN_WORKERS process.
_BUILDERS = {"LimitedHttpToolsProtocol": _httptools_class, "LimitedH11Protocol": _h11_class}


def __getattr__(name: str) -> type:
    if name in _BUILDERS:
        cls = _BUILDERS[name]()
        cls.__module__ = __name__
        cls.__qualname__ = name
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def protocol_class(http: str) -> str:
    """uvicorn's ``http=`` for ``GAN_HTTP`` (auto: httptools, a dependency of the service)."""
    name = "LimitedH11Protocol" if http == "h11" else "LimitedHttpToolsProtocol"
    return f"{__name__}:{name}"
