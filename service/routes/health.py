"""GET /health (the process is alive) and GET /ready (the models are loaded)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from service.routes import ModelEndpoint
from service.schemas import ErrorResponse, HealthResponse, ModelRef, ReadyResponse

router = APIRouter(tags=["health"])

ENDPOINTS: tuple[ModelEndpoint, ...] = ()  # runs no model


@router.get(
    "/health",
    response_model=HealthResponse,
    summary="Liveness: the process answers",
    description="Always 200 while the process runs, even before the models are loaded. Never "
    "needs the API key. Example: `curl -s http://127.0.0.1:8000/health`.",
)
async def health() -> HealthResponse:
    return HealthResponse()


@router.get(
    "/ready",
    response_model=ReadyResponse,
    summary="Readiness: the models are loaded",
    description="200 with the served model once the checkpoint is loaded; 503 before (and while "
    "shutting down). Never needs the API key. Example: `curl -s http://127.0.0.1:8000/ready`.",
    responses={
        503: {
            "model": ErrorResponse,
            "description": "Models not loaded",
            "content": {
                "application/json": {
                    "example": {"detail": "the model is not loaded yet; retry shortly"}
                }
            },
        }
    },
)
async def ready(request: Request) -> ReadyResponse | JSONResponse:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return JSONResponse(
            {
                "detail": "the model is not loaded yet (or the server is shutting down); retry shortly"
            },
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return ReadyResponse(model=ModelRef.model_validate(engine.info.as_dict()))
