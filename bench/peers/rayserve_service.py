"""The Ray Serve peer of gan-serve (Ray Serve 2.60): one deployment with a FastAPI ingress and
``@serve.batch`` methods for D and G.

Run (in the venv of bench/peers/setup.sh; ``bench/serve_load.py --peers rayserve`` does this)::

    GAN_PEER_CHECKPOINT=checkpoints/mnist python bench/peers/rayserve_service.py --port 8000

Endpoints, equivalent to gan-serve's:

* ``POST /score``: multipart form, field ``files`` (one image per request in the benchmark);
  converted with our gan.preprocess.to_model_pixels, then ``_score_batch`` (``@serve.batch``,
  at most 64 requests, 2 ms wait: gan-serve's GAN_MAX_BATCH and GAN_BATCH_DELAY_MS) runs D on
  the batch. Answer: JSON ``{"logit", "probability"}``.
* ``POST /generate``: JSON ``{"seed": S, "n": N, "format": "png" | "grid"}`` -> one PNG (image i
  uses seed S + i, the latents of gan.latents, PNGs as gan.io). ``_generate_batch`` (batched
  the same way) runs G once on all the batched requests' rows (64 rows per forward at most).

How Ray Serve runs it, as its documentation shows: ``ray.init`` starts a local Ray cluster
(``num_cpus`` = this machine's cores), ``serve.run`` deploys one replica (an actor with one
torch intra-op thread, gan-serve's default) behind Serve's HTTP proxy (uvicorn) on the given
port; the proxy forwards each request to the replica over Ray. ``max_ongoing_requests`` is
raised from its default (5) to 128 so that a batch can fill, as Ray Serve's batching guide
advises (it must exceed ``max_batch_size``). Logging at WARNING (no per-request access logs).
"""

# No ``from __future__ import annotations``: FastAPI resolves string annotations in the
# function's module globals, and Ray ships this __main__ class to the replica by value
# (cloudpickle) without the names only the annotations use (UploadFile would become a query
# parameter).
import argparse
import asyncio
import os
from typing import Any

import numpy as np
import ray
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
from fastapi import FastAPI, HTTPException, Response, UploadFile
from ray import serve

#: gan-serve's GAN_BATCH_DELAY_MS default, in seconds.
BATCH_WAIT_S = 0.002
#: Requests a replica takes at once; above MAX_BATCH so that batches can fill.
MAX_ONGOING = 128

app = FastAPI()


@serve.deployment(num_replicas=1, max_ongoing_requests=MAX_ONGOING)
@serve.ingress(app)
class GanPeer:
    """The HTTP API and the model in one replica."""

    def __init__(self) -> None:
        configure_torch()
        self.model: PeerModel = load_model()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _score_batch(self, pixels: list[np.ndarray]) -> list[float]:
        return self.model.score(torch.from_numpy(np.stack(pixels))).tolist()

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=BATCH_WAIT_S)
    async def _generate_batch(self, requests: list[tuple[int, int]]) -> list[torch.Tensor]:
        m = self.model
        z = torch.cat([latents(seed, n, m.z_dim) for seed, n in requests])
        images = m.generate(z)  # 64 rows per forward at most
        return list(torch.split(images, [n for _, n in requests]))

    @app.post("/score")
    async def score(self, files: UploadFile) -> dict[str, float]:
        m = self.model
        data = await files.read()
        try:
            pixels = decode_pixels(data, m.resolution, m.channels)
        except Exception as exc:  # our decoder's UserError and PIL's errors
            raise HTTPException(status_code=400, detail=f"not a readable image: {exc}") from exc
        return score_result(await self._score_batch(pixels))

    @app.post("/generate")
    async def generate(self, body: dict[str, Any]) -> Response:
        try:
            seed, n, fmt = generate_request(body)
        except ValueError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        images = await self._generate_batch((seed, n))
        if n == 1:  # small: encode here, as gan-serve encodes small answers on its event loop
            return Response(content=images_png(images, fmt), media_type="image/png")
        png = await asyncio.to_thread(images_png, images, fmt)
        return Response(content=png, media_type="image/png")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    args = p.parse_args()
    # The replica imports common.py (and through it our gan/ package) from this folder.
    here = os.path.dirname(os.path.abspath(__file__))
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        logging_level="warning",
        runtime_env={"env_vars": {"PYTHONPATH": here}},
    )
    serve.start(
        http_options={"host": args.host, "port": args.port},
        logging_config={"log_level": "WARNING", "enable_access_log": False},
    )
    serve.run(GanPeer.bind(), blocking=True)


if __name__ == "__main__":
    main()
