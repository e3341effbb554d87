"""The API's routers, one module per endpoint group.

Each module declares ``router`` and ``ENDPOINTS``: the routes of it that run a model, each as a
:class:`ModelEndpoint` (its path, the batch queue its requests feed, the response headers it
documents). ``service.app`` derives admission control (``GAN_QUEUE_SIZE``), the per-route
rejection metrics and the batch worker's arrival hints from these declarations alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelEndpoint:
    """A route that runs a model."""

    path: str
    #: The batch queue it feeds (``service.batching.GENERATOR`` or ``DISCRIMINATOR``).
    queue: str
    #: Response headers for its OpenAPI description.
    headers: dict[str, Any] = field(default_factory=dict)
