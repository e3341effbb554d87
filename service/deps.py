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
from service.registry import ModelRegistry, Slot, UnknownModel
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


def registry_of(request: Request) -> ModelRegistry:
    """The served models, or 503 with Retry-After before they load / while stopping."""
    registry: ModelRegistry | None = getattr(request.app.state, "models", None)
    if registry is None:
        raise HTTPException(
            503,
            "the model is not loaded yet (or the server is shutting down); retry when GET /ready "
            "returns 200",
            headers={"Retry-After": "1"},
        )
    return registry


def slot_of(request: Request, model: str | None = None) -> Slot:
    """``model``'s slot (None: the default), without holding its engine; 404 if unknown."""
    try:
        return registry_of(request).slot(model)
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from None


def engine_of(request: Request, model: str | None = None) -> InferenceEngine:
    """``model``'s engine (None: the default) for a model route, held until the response is
    sent (service.admission releases it), so a reload never closes it under the request; 404
    for an unknown model, 503 before the models load."""
    registry = registry_of(request)
    try:
        engine, release = registry.lease(model)
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from None
    request.scope.setdefault("state", {}).setdefault("leases", []).append(release)
    return engine


async def get_engine(request: Request) -> InferenceEngine:
    """The default model's engine, not held (for routes that only read its description)."""
    return slot_of(request).engine


def protected(**openapi_extra: Any) -> dict[str, Any]:
    """Route decorator arguments of a key-protected route: ``@router.post(path,
    **protected())``; ``openapi_extra`` entries of the route go through here. The security
    requirement it adds is what :func:`service.auth.protected_routes` looks for."""
    return {"openapi_extra": {**openapi_extra, "security": [{BEARER_SCHEME: []}]}}


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[InferenceEngine, Depends(get_engine)]
