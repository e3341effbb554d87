"""The TorchServe peer of gan-serve (TorchServe 0.12): one custom handler, two models.

The same handler file is archived twice (bench/peers/README.md has the commands;
``bench/serve_load.py --peers torchserve`` runs them): as model ``score`` and as model
``generate``. Each model has its own batch queue in TorchServe's frontend (batch_size 64,
max_batch_delay 2 ms, one worker process each) and the handler picks its job from the model name:

* ``POST /predictions/score``: multipart form, field ``files``, ONE image per request (the
  benchmark's request; TorchServe hands the handler a request's form fields as a dict, one value
  per field name), or the image as the raw body. Answer: JSON
  ``{"results": [{"logit", "probability"}]}``.
* ``POST /predictions/generate``: JSON ``{"seed": S, "n": N, "format": "png" | "grid"}`` -> one
  PNG (image i uses seed S + i, the latents of gan.latents; PNGs as gan.io).

A batch of requests (up to 64 of them) becomes one forward pass of at most 64 rows at a time,
as gan-serve's GAN_MAX_BATCH. The model code, preprocessing, latents and PNG encoding come
from our repository through bench/peers/common.py (archived next to this file).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch
from common import (
    PeerModel,
    check_generate,
    configure_torch,
    decode_pixels,
    images_png,
    latents,
    load_model,
    score_result,
)


class GanHandler:
    """TorchServe custom handler: ``initialize(context)`` once, ``handle(batch, context)``."""

    def __init__(self) -> None:
        self.model: PeerModel | None = None
        self.kind = ""

    def initialize(self, context: Any) -> None:
        configure_torch()
        self.model = load_model()
        self.kind = str(context.model_name)
        if self.kind not in ("score", "generate"):
            raise ValueError(f"model name must be 'score' or 'generate', got {self.kind!r}")

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[Any]:
        if self.model is None:
            raise RuntimeError("handler not initialised")
        if self.kind == "score":
            return self._score(self.model, data)
        return self._generate(self.model, data, context)

    @staticmethod
    def _score(model: PeerModel, data: list[dict[str, Any]]) -> list[Any]:
        pixels: list[np.ndarray] = []
        for request in data:
            upload = request.get("files") or request.get("data") or request.get("body")
            if not isinstance(upload, (bytes, bytearray)):
                raise ValueError("send one image as multipart form field 'files'")
            pixels.append(decode_pixels(bytes(upload), model.resolution, model.channels))
        logits = model.score(torch.from_numpy(np.stack(pixels))).tolist()
        return [{"results": [score_result(x)]} for x in logits]

    @staticmethod
    def _generate(model: PeerModel, data: list[dict[str, Any]], context: Any) -> list[Any]:
        asks: list[tuple[int, int, str]] = []
        for request in data:
            body = request.get("body") or request.get("data")
            if isinstance(body, (bytes, bytearray)):
                body = json.loads(body)
            if not isinstance(body, dict):
                raise ValueError('send JSON {"seed": S, "n": N, "format": "png" | "grid"}')
            n = int(body.get("n", 1))
            fmt = str(body.get("format", "png" if n == 1 else "grid"))
            check_generate(n, fmt)
            asks.append((int(body.get("seed", 0)), n, fmt))
        z = torch.cat([latents(seed, n, model.z_dim) for seed, n, _ in asks])
        images = model.generate(z)
        out: list[Any] = []
        start = 0
        for idx, (_, n, fmt) in enumerate(asks):
            out.append(images_png(images[start : start + n], fmt))
            context.set_response_content_type(idx, "image/png")
            start += n
        return out
