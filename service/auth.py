"""The API key: the one check, as pure ASGI middleware, before admission and before any body.

A route is key-protected when it declares ``**protected()`` (:mod:`service.deps`): the bearer
scheme in its OpenAPI ``security``. :func:`protected_routes` collects exactly those routes from
the app, so what ``/docs`` shows with a lock is what :class:`ApiKeyMiddleware` enforces. The
middleware answers a request to such a route without ``Authorization: Bearer <key>`` with 401
from its headers alone: nothing of its body is read, it takes no admission slot, and a
malformed body gets 401, not 422. With no ``GAN_API_KEY`` the middleware is not installed.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.deps import BEARER_SCHEME
from service.middleware import send_json

UNAUTHORIZED_DETAIL = (
    "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key the "
    "server was started with (GAN_API_KEY)"
)
WWW_AUTHENTICATE = 'Bearer realm="gan-serve"'


def key_matches(authorization: str, expected: bytes) -> bool:
    """Whether an ``Authorization`` header value carries the bearer ``expected`` (compared in
    constant time)."""
    scheme, _, given = authorization.partition(" ")
    token = given.strip().encode("utf-8", "replace") if scheme.lower() == "bearer" else b""
    return bool(token) and hmac.compare_digest(token, expected)


@dataclass(frozen=True)
class ProtectedRoute:
    path: str  # the route template, for logs and metrics
    pattern: re.Pattern[str]
    methods: frozenset[str]


def is_protected(route: BaseRoute) -> bool:
    """A route that declared ``**protected()``: the bearer scheme in its OpenAPI security."""
    extra = getattr(route, "openapi_extra", None) or {}
    return any(BEARER_SCHEME in requirement for requirement in extra.get("security", ()))


def protected_routes(routes: Iterable[BaseRoute]) -> tuple[ProtectedRoute, ...]:
    """The key-protected routes among ``routes`` (the routes of the routers that create_app
    includes, without a prefix, as it collects their ENDPOINTS)."""
    found = []
    for route in routes:
        if isinstance(route, Route) and is_protected(route):
            methods = set(route.methods or ())
            if "GET" in methods:
                methods.add("HEAD")
            found.append(ProtectedRoute(route.path, route.path_regex, frozenset(methods)))
    return tuple(found)


class ApiKeyMiddleware:
    """401 for a request to a protected route without the key, from its headers alone."""

    def __init__(self, app: ASGIApp, *, api_key: str, routes: tuple[ProtectedRoute, ...]) -> None:
        self.app = app
        self.expected = api_key.encode()
        self.routes = routes

    def _route(self, scope: Scope) -> ProtectedRoute | None:
        path, method = scope.get("path", ""), scope.get("method", "")
        for route in self.routes:
            if method in route.methods and route.pattern.match(path):
                return route
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._route(scope) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        authorization = ""
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                authorization = value.decode("latin-1")
                break
        if key_matches(authorization, self.expected):
            await self.app(scope, receive, send)
            return
        # Answered without reading the body: the server discards it as it comes (closing now
        # could reset the connection before the client reads the 401).
        scope.setdefault("state", {})["route"] = route.path
        await send_json(
            send, 401, {"detail": UNAUTHORIZED_DETAIL}, {"WWW-Authenticate": WWW_AUTHENTICATE}
        )
