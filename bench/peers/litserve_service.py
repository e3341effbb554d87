"""The LitServe peer of gan-serve (LitServe 0.2.19): one ``LitAPI`` per endpoint, each with
LitServe's own dynamic batching, both in one ``LitServer`` on one port.

Run (in the venv of bench/peers/setup.sh; ``bench/serve_load.py --peers litserve`` does this)::

    GAN_PEER_CHECKPOINT=checkpoints/mnist python bench/peers/litserve_service.py --port 8000

Endpoints, equivalent to gan-serve's:

* ``POST /score``: multipart form, field ``files`` (one image per request in the benchmark).
  ``decode_request`` converts it with our gan.preprocess.to_model_pixels; LitServe batches
  concurrent requests (``max_batch_size`` 64, ``batch_timeout`` 2 ms, as gan-serve's
  GAN_MAX_BATCH and GAN_BATCH_DELAY_MS) and ``predict`` runs D on the batch. Answer: JSON
  ``{"logit", "probability"}``.
* ``POST /generate``: JSON ``{"seed": S, "n": N, "format": "png" | "grid"}`` -> one PNG (image i
  uses seed S + i, the latents of gan.latents, PNGs as gan.io). Requests are batched the same
  way; ``predict`` draws every request's latents, runs G once on all of their rows (64 rows per
  forward at most) and splits the images back per request; ``encode_response`` writes the PNG.

LitServe's architecture, used as its documentation shows it: the HTTP server (FastAPI + uvicorn)
puts each decoded request on a queue; one inference worker process per LitAPI
(``accelerator="cpu"``, ``workers_per_device=1``, its default) runs decode_request, batch,
predict, unbatch and encode_response, and sends the response back over a queue. One torch
intra-op thread per worker (gan-serve's default); ``timeout`` 30 s (gan-serve's
GAN_REQUEST_TIMEOUT_S). No API key (gan-serve runs without one in the benchmark too).
"""

# No ``from __future__ import annotations``: LitServe reads decode_request's and
# encode_response's annotations at run time (inspect.signature) to pick the request and response
# types, and string annotations would match neither.
import argparse
from typing import Any

import litserve as ls
import numpy as np
import torch
from common import (
    MAX_BATCH,
    PeerModel,
    configure_torch,
    decode_pixels,
    generate_request,
    images_png,
    latents,
    load_model,
    score_result,
)
from fastapi import HTTPException, Request, Response

#: gan-serve's GAN_BATCH_DELAY_MS default, in seconds.
BATCH_TIMEOUT_S = 0.002
#: gan-serve's GAN_REQUEST_TIMEOUT_S default.
REQUEST_TIMEOUT_S = 30.0


class ScoreAPI(ls.LitAPI):
    """D's logit for each uploaded image; concurrent requests are batched by LitServe."""

    def setup(self, device: str) -> None:
        configure_torch()
        self.model: PeerModel = load_model()

    def decode_request(self, request: Request) -> np.ndarray:  # type: ignore[override]
        """The form's ``files`` field -> uint8 model pixels ``[C, R, R]``.

        Annotated ``Request`` so that LitServe parses the multipart form (its
        ``_prepare_request``); what arrives here, in the worker, is the parsed form."""
        form: Any = request
        upload = form.get("files")
        if upload is None or not hasattr(upload, "file"):
            raise HTTPException(status_code=400, detail="send the image as form field 'files'")
        data = upload.file.read()
        try:
            return decode_pixels(data, self.model.resolution, self.model.channels)
        except Exception as exc:  # our decoder's UserError and PIL's errors
            raise HTTPException(status_code=400, detail=f"not a readable image: {exc}") from exc

    def batch(self, inputs: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.stack(inputs))

    def predict(self, x: torch.Tensor) -> list[float]:
        return self.model.score(x).tolist()

    def encode_response(self, output: float) -> dict[str, float]:
        return score_result(output)


class GenerateAPI(ls.LitAPI):
    """``{"seed", "n", "format"}`` -> one PNG; concurrent requests share G's forward passes."""

    def setup(self, device: str) -> None:
        configure_torch()
        self.model: PeerModel = load_model()

    def decode_request(self, request: dict[str, Any]) -> tuple[int, int, str]:
        try:
            return generate_request(request)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc

    def batch(self, inputs: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        return inputs

    def predict(self, x: list[tuple[int, int, str]]) -> list[tuple[torch.Tensor, str]]:
        m = self.model
        z = torch.cat([latents(seed, n, m.z_dim) for seed, n, _ in x])
        images = m.generate(z)  # 64 rows per forward at most
        parts = torch.split(images, [n for _, n, _ in x])
        return [(part, fmt) for part, (_, _, fmt) in zip(parts, x, strict=True)]

    def encode_response(self, output: tuple[torch.Tensor, str]) -> Response:
        images, fmt = output
        return Response(content=images_png(images, fmt), media_type="image/png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    apis = [
        ScoreAPI(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT_S, api_path="/score"),
        GenerateAPI(max_batch_size=MAX_BATCH, batch_timeout=BATCH_TIMEOUT_S, api_path="/generate"),
    ]
    server = ls.LitServer(apis, accelerator="cpu", workers_per_device=1, timeout=REQUEST_TIMEOUT_S)
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
