"""What routes need: the settings, the inference engine, and the API-key declaration.

Every key-protected route (``/generate``, ``/score``, ``/info``) declares ``**protected()``:
the bearer security scheme in OpenAPI (the lock in ``/docs``). :mod:`service.auth` collects
the routes that declare it and checks the key for them in the middleware chain, before
admission and before any of the body is read, so a caller without the key gets 401 at once
(not 422, not 503, and without the server reading or parsing its body). There is no key
dependency: the middleware is the one check.
"""

from __future__ import annotations

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


def protected(**openapi_extra: Any) -> dict[str, Any]:
    """Route decorator arguments of a key-protected route: ``@router.post(path,
    **protected())``; ``openapi_extra`` entries of the route go through here. The security
    requirement it adds is what :func:`service.auth.protected_routes` looks for."""
    return {"openapi_extra": {**openapi_extra, "security": [{BEARER_SCHEME: []}]}}


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
