"""GET /metrics: Prometheus text format (service.metrics), open even with GAN_API_KEY."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from service.metrics import Metrics
from service.routes import ModelEndpoint

router = APIRouter(tags=["health"])

ENDPOINTS: tuple[ModelEndpoint, ...] = ()  # runs no model


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Request counts and latency by route and status, queue depth, batch sizes, "
    "inference time, 503/504 rejections and the served model, in the Prometheus text format. "
    "Never needs the API key and never waits for inference (turn it off with "
    "GAN_METRICS_ENABLED=false). With GAN_WORKERS > 1 each scrape reaches one worker process. "
    "Example: `curl -s http://127.0.0.1:8000/metrics`.",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"example": 'gan_queue_depth{model="generator"} 0.0'}}}
    },
)
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics
    assert isinstance(registry, Metrics)
    return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
