"""What routes need: the settings, the inference engine, and the one API-key check.

Every key-protected route (``/generate``, ``/score``, ``/info``) declares ``**protected()``:
the :func:`require_api_key` dependency plus the bearer security scheme in OpenAPI (the lock in
``/docs``). The dependency has no sub-dependencies on purpose: every FastAPI dependency costs
tens of microseconds of event-loop time per request (measured with py-spy under load), a
sizeable share of a single-image request. It runs before the request body is validated, so a
caller without the key gets 401, not 422.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from service.inference import InferenceEngine
from service.settings import Settings

BEARER_SCHEME = "HTTPBearer"
#: The OpenAPI security scheme of the key (added to the schema's components by create_app).
BEARER_SCHEME_SPEC: dict[str, Any] = {
    "type": "http",
    "scheme": "bearer",
    "description": "Needed only when the server runs with GAN_API_KEY: "
    "'Authorization: Bearer <key>'.",
}


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


async def require_api_key(request: Request) -> None:
    """The API-key check as one light dependency."""
    check_api_key(request, request.app.state.settings)


def protected(**openapi_extra: Any) -> dict[str, Any]:
    """Route decorator arguments of a key-protected route: ``@router.post(path,
    **protected())``; ``openapi_extra`` entries of the route go through here."""
    return {
        "dependencies": [Depends(require_api_key)],
        "openapi_extra": {**openapi_extra, "security": [{BEARER_SCHEME: []}]},
    }

SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
