"""The FastAPI application: :func:`create_app` wires settings, middleware, routes and lifespan.

The models load once, in the lifespan, each into an :class:`~service.inference.InferenceEngine`
of a :class:`~service.registry.ModelRegistry` kept on ``app.state.models`` (the default model's
engine also on ``app.state.engine``); routes reach them through :mod:`service.deps`. A
checkpoint that cannot be served stops start-up with one line naming the file and the problem
(``app.state.startup_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager, nullcontext
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from service.admission import BodyLimits, ModelRequestMiddleware, generate_body_limit
from service.auth import ApiKeyMiddleware, protected_routes
from service.batching import Arrival, QueueFull, QueueTimeout
from service.deps import BEARER_SCHEME, BEARER_SCHEME_SPEC
from service.inference import BatchingOptions, InferenceEngine, StartupError
from service.metrics import Metrics
from service.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from service.registry import ModelRegistry, Slot
from service.routes import docs, generate, health, info, metrics, models, page, project, score
from service.settings import ModelSpec, Settings

logger = logging.getLogger("service")

# The inference thread needs the GIL between torch ops; with CPython's default switch interval
# (5 ms) it can wait that long behind the event loop each time. 1 ms gave +19 % images/s for
# 64-image /score requests on 2 cores (bench/serve_load.py, docs/benchmarks.md).
GIL_SWITCH_INTERVAL_S = 0.001

# Uploads decoded and converted at the same time per process. Converting one image near the
# default pixel limit (2048 x 2048 RGBA) peaks at ~180 MB and ~0.25 s (measured), so this bounds
# the memory that concurrent /score requests can claim; further requests wait their turn.
IMAGE_CONVERSION_THREADS = 2

DESCRIPTION = """\
Generate images with a trained GAN generator and score images with its discriminator.

* `POST /generate`: images from seeds (reproducible), explicit latents or a slerp path; with a
  sampling `method` (`drs`, `mh`, `langevin`, `pixel_ascent`) D guides or makes the images.
* `POST /score`: D's logit, probability, calibrated probability and realness percentile for
  uploaded images.
* `POST /project`: an uploaded image -> the latent (and class) whose G(z) draws it, with the
  reconstruction, its distances and D's scores of both.
* `GET /models`, `POST /models/{name}/reload`: the served models (requests pick one with
  `model`), and swapping a new checkpoint in without a failed request.
* `GET /health`, `GET /ready`, `GET /info`, `GET /metrics` (Prometheus).
* `GET /`: a web page that uses these endpoints (generate, interpolate, score, model card).

Concurrent requests share batched forward passes. A request's body is read before it takes one of
the `GAN_QUEUE_SIZE` slots; when they are all taken further requests get 503 with `Retry-After`
at once; a request that waits longer than `GAN_REQUEST_TIMEOUT_S` for the model gets 504.

Every generate/score response names the model that produced it (`X-Model-Id`, `X-Model-Step`,
`X-Checkpoint-Hash`). Errors are JSON `{"detail": ...}` saying what to fix; every response
carries `X-Request-ID`. See docs/api.md for curl examples and all `GAN_` settings.
"""


async def _validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """422 with ``detail = [{loc, msg, type}]``: the field and what is wrong with it.

    The offending input is not echoed back (it may be a large latent array or binary data).
    """
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": list(err.get("loc", ())),
            "msg": str(err.get("msg", "")),
            "type": err.get("type", ""),
        }
        for err in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def _route_of(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or request.url.path


async def _queue_full_handler(request: Request, exc: Exception) -> JSONResponse:
    """503 + Retry-After: the batch queue is full (admission normally answers this earlier)."""
    metrics: Metrics = request.app.state.metrics
    metrics.rejected.labels(_route_of(request), "queue_full").inc()
    return JSONResponse(
        {"detail": f"the server is at capacity: {exc}; retry after 1 s"},
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def _queue_timeout_handler(request: Request, exc: Exception) -> JSONResponse:
    """504: the request waited for the model longer than GAN_REQUEST_TIMEOUT_S."""
    metrics: Metrics = request.app.state.metrics
    metrics.rejected.labels(_route_of(request), "timeout").inc()
    return JSONResponse(
        {
            "detail": f"the server is overloaded: this request {exc}; retry later or send fewer images"
        },
        status_code=504,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; ``settings`` default to the ``GAN_`` environment variables."""
    settings = settings if settings is not None else Settings()
    routers = (health, info, models, generate, score, project, page, docs)
    endpoints = tuple(e for module in routers for e in module.ENDPOINTS)
    model_paths = tuple(e.path for e in endpoints)
    app_metrics = Metrics(model_routes=model_paths)
    body_limits = BodyLimits(settings.max_body_bytes)
    model_of = {e.path: e.queue for e in endpoints}

    def arriving(path: str, model: str | None = None) -> AbstractContextManager[Arrival | None]:
        """A model request whose body is on its way, for the batch worker (GAN_MAX_DELAY_MS)
        of the model it names in its query (else the default's; a guess it may not use)."""
        registry: ModelRegistry | None = app.state.models
        kind = model_of.get(path)
        if registry is None or kind is None or (model and model not in registry.slots):
            return nullcontext()
        return registry.slot(model).engine.arriving(kind)

    batching = BatchingOptions(
        max_batch=settings.max_batch,
        max_delay_ms=settings.max_delay_ms,
        queue_size=settings.queue_size,
        timeout_s=settings.request_timeout_s,
    )

    def load_engine(spec: ModelSpec, folder: Path) -> InferenceEngine:
        return InferenceEngine.load(
            folder,
            device=settings.device,
            torch_threads=settings.torch_threads,
            interop_threads=settings.torch_interop_threads,
            batching=batching,
            metrics=app_metrics.for_model(spec.name),
            runtime=settings.engine,
        )

    def on_swap(slot: Slot) -> None:
        """A model was loaded or swapped: its metrics line, the /generate body limit, and
        ``app.state.engine`` (the default model's engine)."""
        registry: ModelRegistry = app.state.models
        e = slot.engine
        app_metrics.set_model(
            slot.name, e.info.model_id, e.info.step, e.info.checkpoint_hash, e.device, slot.default
        )
        largest = max(s.engine.z_dim for s in registry.slots.values())
        body_limits.set(generate.ENDPOINTS[0].path, generate_body_limit(settings, largest))
        if slot.default:
            app.state.engine = e

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.startup_error = None
        try:
            registry = await anyio.to_thread.run_sync(
                ModelRegistry.load, settings.model_specs(), load_engine
            )
        except StartupError as exc:
            app.state.startup_error = str(exc)
            raise
        app.state.models = registry
        registry.on_swap = on_swap
        for slot in registry.slots.values():
            on_swap(slot)
            logger.info(
                "model loaded",
                extra={
                    "model_name": slot.name,
                    "default": slot.default,
                    "model_id": slot.engine.info.model_id,
                    "step": slot.engine.info.step,
                    "checkpoint_hash": slot.engine.info.checkpoint_hash,
                    "checkpoint": str(slot.checkpoint),
                    "device": slot.engine.device,
                },
            )
        previous_switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(previous_switch_interval, GIL_SWITCH_INTERVAL_S))
        app.state.image_limiter = anyio.CapacityLimiter(IMAGE_CONVERSION_THREADS)
        watcher: asyncio.Task[None] | None = None
        if settings.watch_s > 0:

            def counted(name: str, ok: bool) -> None:
                app_metrics.reloads.labels(name, "ok" if ok else "refused").inc()

            watcher = asyncio.create_task(registry.watch(settings.watch_s, counted))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            app.state.engine = None
            app.state.models = None
            app_metrics.clear_model()
            await registry.aclose()
            sys.setswitchinterval(previous_switch_interval)

    app = FastAPI(
        title="gan-serve",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # /docs and /redoc are served by service.routes.docs with local assets (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = None
    app.state.models = None
    app.state.startup_error = None
    app.state.metrics = app_metrics
    app.state.body_limits = body_limits
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(QueueFull, _queue_full_handler)
    app.add_exception_handler(QueueTimeout, _queue_timeout_handler)

    for module in routers:
        app.include_router(module.router)
    if settings.metrics_enabled:
        app.include_router(metrics.router)
    page.mount_static(app)

    # add_middleware: the last one added is the outermost (order: service.middleware).
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        body_deadline_s=settings.body_deadline_s,
        exempt_paths=model_paths,
    )
    app.add_middleware(
        ModelRequestMiddleware,
        paths=model_paths,
        queue_size=settings.queue_size,
        limits=body_limits,
        body_timeout_s=settings.body_timeout_s,
        body_deadline_s=settings.body_deadline_s,
        buffer_bytes=settings.body_buffer_bytes,
        metrics=app_metrics,
        announce=arriving,
    )
    if settings.api_key is not None:  # the one key check, before the body and admission
        app.add_middleware(
            ApiKeyMiddleware,
            api_key=settings.api_key.get_secret_value(),
            routes=protected_routes(r for module in routers for r in module.router.routes),
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-Model-Id",
                "X-Model-Step",
                "X-Checkpoint-Hash",
                "X-Seed",
                "X-Image-Count",
                "X-Grid-Columns",
                "X-Sampling-Method",
                "X-Sampling-Seconds",
                "X-Acceptance-Rate",
            ],
        )
    app.add_middleware(
        RequestContextMiddleware, metrics=app_metrics, max_header_bytes=settings.max_header_bytes
    )
    _add_security_scheme(app)
    return app


def _add_security_scheme(app: FastAPI) -> None:
    """Declare the bearer scheme that the key-protected routes name (service.deps.protected)
    in the OpenAPI components, so /docs shows the lock and an 'Authorize' button."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[BEARER_SCHEME] = BEARER_SCHEME_SPEC
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (``GAN_WORKERS > 1``): env settings + JSON logs."""
    from service.logconfig import configure_logging

    settings = Settings()
    configure_logging(settings.log_level)
    return create_app(settings)
