"""GET /models (the served models) and POST /models/{name}/reload (swap in a new checkpoint)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request

from service.deps import protected, registry_of
from service.registry import ReloadRefused, UnknownModel
from service.routes import ModelEndpoint
from service.schemas import ErrorResponse, ModelEntry, ModelsResponse, ReloadResponse

router = APIRouter(tags=["models"])

ENDPOINTS: tuple[ModelEndpoint, ...] = ()  # runs no model itself


@router.get(
    "/models",
    response_model=ModelsResponse,
    summary="The served models",
    description="Every model this service serves (GAN_CHECKPOINTS, or GAN_CHECKPOINT alone), "
    "the default first: requests that name no `model` get it. `model` is a JSON field of "
    "POST /generate, a form field of POST /project and a query parameter of POST /score and "
    "GET /info. Example: `curl -s http://127.0.0.1:8000/models`.",
    **protected(),
)
async def list_models(request: Request) -> ModelsResponse:
    registry = registry_of(request)
    return ModelsResponse(
        models=[ModelEntry.model_validate(s.describe()) for s in registry.slots.values()],
        default=registry.default,
    )


@router.post(
    "/models/{name}/reload",
    response_model=ReloadResponse,
    summary="Reload a model from its path without a failed request",
    description="Loads what is now at the model's configured path (a checkpoint, or a run "
    "folder's best, else latest), verifies it exactly as at start-up (hashes, config, a forward "
    "pass with finite outputs) and warms it up, then swaps it in: requests already admitted "
    "finish on the old model, new ones get the new one. A checkpoint that cannot be served is "
    "refused with 422 and the old model keeps serving. With GAN_WORKERS > 1 a request reaches "
    "one worker process: use GAN_WATCH_S there. Example: "
    "`curl -s -X POST http://127.0.0.1:8000/models/mnist/reload`.",
    **protected(),
    responses={
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
        404: {"model": ErrorResponse, "description": "No model of that name"},
        422: {"model": ErrorResponse, "description": "The checkpoint there cannot be served"},
    },
)
async def reload_model(name: str, request: Request) -> ReloadResponse:
    registry = registry_of(request)
    metrics = request.app.state.metrics
    try:
        result = await registry.reload(name)
    except UnknownModel as exc:
        raise HTTPException(404, str(exc)) from None
    except ReloadRefused as exc:
        metrics.reloads.labels(name, "refused").inc()
        raise HTTPException(422, str(exc)) from None
    metrics.reloads.labels(name, "ok").inc()
    return ReloadResponse.model_validate(result)
