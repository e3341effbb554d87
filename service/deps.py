"""Settings, the inference engine and the optional API key, for the routes.

``/info`` uses them as FastAPI dependencies. The hot routes (``/generate``, ``/score``) use
:func:`api_key` (one light dependency) and :func:`model_context` instead: every FastAPI dependency costs tens of microseconds of
event-loop time per request (measured with py-spy under load), which is a sizeable share of a
single-image request. They declare the same security scheme for the OpenAPI docs
(:data:`BEARER_SECURITY`), so ``/docs`` shows the lock on all three.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.inference import InferenceEngine
from service.settings import Settings

BEARER_SCHEME = "HTTPBearer"
_bearer = HTTPBearer(
    scheme_name=BEARER_SCHEME,
    auto_error=False,
    description="Needed only when the server runs with GAN_API_KEY: 'Authorization: Bearer <key>'.",
)
#: ``openapi_extra`` of routes that check the key with :func:`model_context`.
BEARER_SECURITY: dict[str, Any] = {"security": [{BEARER_SCHEME: []}]}


# The dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
# worker thread, and a thread hop per dependency costs more than what they do.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def engine_of(request: Request) -> InferenceEngine:
    """The loaded engine, or 503 with Retry-After before the models load / while stopping."""
    engine: InferenceEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(
            503,
            "the model is not loaded yet (or the server is shutting down); retry when GET /ready "
            "returns 200",
            headers={"Retry-After": "1"},
        )
    return engine


async def get_engine(request: Request) -> InferenceEngine:
    return engine_of(request)


def check_api_key(request: Request, settings: Settings) -> None:
    """With GAN_API_KEY set, demand ``Authorization: Bearer <key>`` (constant-time compare)."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    token = given.strip().encode("utf-8", "replace") if scheme.lower() == "bearer" else b""
    if not token or not hmac.compare_digest(token, expected):
        raise HTTPException(
            401,
            "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key "
            "the server was started with (GAN_API_KEY)",
            headers={"WWW-Authenticate": 'Bearer realm="gan-serve"'},
        )


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """The API-key check as a dependency (``credentials`` puts the scheme into OpenAPI)."""
    check_api_key(request, request.app.state.settings)


async def api_key(request: Request) -> None:
    """The API-key check as one light dependency (no sub-dependencies): /generate runs it
    before its JSON body is validated, so a caller without the key gets 401, not 422."""
    check_api_key(request, request.app.state.settings)


def model_context(request: Request) -> tuple[InferenceEngine, Settings]:
    """API key, then the engine and the settings: what /generate and /score need first."""
    settings: Settings = request.app.state.settings
    check_api_key(request, settings)
    return engine_of(request), settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
