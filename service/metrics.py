"""Prometheus metrics of one app (``GET /metrics``), on a registry of its own.

Every :func:`service.app.create_app` builds a :class:`Metrics` with its own
``CollectorRegistry``, so several apps in one process (tests) never collide and a scrape shows
only the app that answers it. With ``GAN_WORKERS > 1`` each worker process keeps its own
numbers: a scrape reaches one worker, chosen by the kernel (see docs/api.md, "Metrics").

Names (all prefixed ``gan_``):

* ``http_requests_total{route,method,status}`` and ``http_request_duration_seconds{...}``:
  every HTTP request, by route template (``unmatched`` for unknown paths);
* ``requests_in_progress``: /generate and /score requests admitted (GAN_QUEUE_SIZE bounds it);
* ``queue_depth{model_name,model}`` / ``queue_images{model_name,model}``: requests and images
  waiting for a forward;
* ``batch_size{model_name,model}``, ``inference_seconds{model_name,model}``: each batched
  forward pass (``model_name``: the served model's name, ``GET /models``; ``model``:
  ``generator``, ``discriminator``, or ``gradient`` for a chunk of a gradient method's images);
* ``queue_wait_seconds{model_name,model}``: from a request's enqueue to its first forward;
* ``rejected_requests_total{route,reason}``: 503 (``queue_full``, ``body_buffer_full``), 504
  (``timeout``) and 408 (``body_timeout``);
* ``model_info{model_name,model_id,step,checkpoint_hash,device,default}``: 1 for each served
  model (a reload replaces its line);
* ``model_reloads_total{model_name,outcome}``: reloads by ``ok`` / ``refused``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
INFERENCE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,  # a chunk of a gradient method's images (langevin, pixel_ascent)
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
MODELS = ("generator", "discriminator", "gradient")
REJECTION_REASONS = ("queue_full", "timeout", "body_buffer_full", "body_timeout")


class Metrics:
    """The collectors of one app, registered on ``self.registry``."""

    def __init__(self, model_routes: tuple[str, ...] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gan_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "gan_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_progress = Gauge(
            "gan_requests_in_progress",
            "/generate and /score requests admitted and not yet answered (bounded by "
            "GAN_QUEUE_SIZE).",
            registry=r,
        )
        self.queue_depth = Gauge(
            "gan_queue_depth",
            "Requests with images waiting for a forward pass.",
            ["model_name", "model"],
            registry=r,
        )
        self.queue_images = Gauge(
            "gan_queue_images",
            "Images waiting for a forward pass.",
            ["model_name", "model"],
            registry=r,
        )
        self.batch_size = Histogram(
            "gan_batch_size",
            "Images per batched forward pass.",
            ["model_name", "model"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "gan_inference_seconds",
            "Duration of one batched forward pass (incl. batch assembly and output conversion).",
            ["model_name", "model"],
            buckets=INFERENCE_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "gan_queue_wait_seconds",
            "Time from a request's enqueue to the start of its first forward pass.",
            ["model_name", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejected = Counter(
            "gan_rejected_requests",
            "Requests refused for load: 503 queue_full (GAN_QUEUE_SIZE), 503 body_buffer_full "
            "(GAN_BODY_BUFFER_BYTES), 504 timeout (GAN_REQUEST_TIMEOUT_S), 408 body_timeout "
            "(GAN_BODY_TIMEOUT_S, GAN_BODY_DEADLINE_S).",
            ["route", "reason"],
            registry=r,
        )
        self.model_info = Gauge(
            "gan_model_info",
            "The served models (value 1 each).",
            ["model_name", "model_id", "step", "checkpoint_hash", "device", "default"],
            registry=r,
        )
        self._info_labels: dict[str, tuple[str, ...]] = {}
        self.reloads = Counter(
            "gan_model_reloads",
            "Model reloads (POST /models/NAME/reload, GAN_WATCH_S) by outcome: ok, refused.",
            ["model_name", "outcome"],
            registry=r,
        )
        for route in model_routes:
            for reason in REJECTION_REASONS:
                self.rejected.labels(route, reason)

    def for_model(self, name: str) -> ModelMetrics:
        """The per-model collectors with ``model_name`` bound (what one engine writes)."""
        for model in MODELS:  # present from the start, at 0
            self.queue_depth.labels(name, model)
            self.queue_images.labels(name, model)
        for outcome in ("ok", "refused"):
            self.reloads.labels(name, outcome)
        return ModelMetrics(self, name)

    def set_model(
        self, name: str, model_id: str, step: int, checkpoint_hash: str, device: str, default: bool
    ) -> None:
        """``name``'s line of model_info (any earlier one of that name goes)."""
        self.clear_model(name)
        labels = (name, model_id, str(step), checkpoint_hash, device, str(default).lower())
        self.model_info.labels(*labels).set(1)
        self._info_labels[name] = labels

    def clear_model(self, name: str | None = None) -> None:
        """Drop ``name``'s model_info line (every line without a name)."""
        if name is None:
            self.model_info.clear()
            self._info_labels.clear()
        elif name in self._info_labels:
            self.model_info.remove(*self._info_labels.pop(name))


class _Bound:
    """A labelled collector with its first label (``model_name``) given."""

    def __init__(self, metric: Any, name: str) -> None:
        self.metric = metric
        self.name = name

    def labels(self, *values: str) -> Any:
        return self.metric.labels(self.name, *values)


class ModelMetrics:
    """What :class:`service.batching.BatchScheduler` writes for one served model: the queue
    and forward-pass collectors of :class:`Metrics` with ``model_name`` bound."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self.name = name
        self.queue_depth = _Bound(metrics.queue_depth, name)
        self.queue_images = _Bound(metrics.queue_images, name)
        self.batch_size = _Bound(metrics.batch_size, name)
        self.inference = _Bound(metrics.inference, name)
        self.queue_wait = _Bound(metrics.queue_wait, name)
