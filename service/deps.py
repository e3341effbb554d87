"""FastAPI dependencies: settings, the inference engine, and the optional API key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.inference import InferenceEngine
from service.settings import Settings

_bearer = HTTPBearer(
    auto_error=False,
    description="Needed only when the server runs with GAN_API_KEY: 'Authorization: Bearer <key>'.",
)


# The dependencies are ``async def`` on purpose: FastAPI runs plain ``def`` dependencies in a
# worker thread, and a thread hop per dependency costs more than what they do.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_engine(request: Request) -> InferenceEngine:
    engine: InferenceEngine | None = getattr(request.app.state, "engine", None)
    if engine is None:
        raise HTTPException(
            503,
            "the model is not loaded yet (or the server is shutting down); retry when GET /ready "
            "returns 200",
            headers={"Retry-After": "1"},
        )
    return engine


async def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With GAN_API_KEY set, demand ``Authorization: Bearer <key>`` (constant-time compare)."""
    settings: Settings = request.app.state.settings
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value().encode()
    given = credentials.credentials.encode("utf-8", "replace") if credentials else b""
    if not given or not hmac.compare_digest(given, expected):
        raise HTTPException(
            401,
            "missing or wrong API key: send the header 'Authorization: Bearer <key>' with the key "
            "the server was started with (GAN_API_KEY)",
            headers={"WWW-Authenticate": 'Bearer realm="gan-serve"'},
        )


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
