"""Short, bounded loads (seconds, 127.0.0.1 only) against the real ``gan-serve`` process."""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.service import imagefiles as F
from tests.service.conftest import ServerProcess

pytestmark = pytest.mark.slow

LOAD_SECONDS = 2.0
MAX_REQUESTS_PER_CLIENT = 2_000


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def files(*pngs: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (f"f{i}.png", png, "image/png")) for i, png in enumerate(pngs)]


async def closed_loop(
    clients: int, seconds: float, step: Callable[[int, int], Awaitable[None]]
) -> None:
    """``clients`` loops calling ``step(client, i)`` until ``seconds`` pass (and a count bound)."""
    until = time.monotonic() + seconds

    async def loop(c: int) -> None:
        for i in range(MAX_REQUESTS_PER_CLIENT):
            if time.monotonic() >= until:
                return
            await step(c, i)

    await asyncio.wait_for(asyncio.gather(*(loop(c) for c in range(clients))), seconds + 60)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text output (0 when absent): the first whose
    labels include ``labels`` (so a model's samples match without its ``model_name``)."""
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        sample_name, brace, rest = head.partition("{")
        if sample_name != name or (bool(labels) and not brace):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def test_short_load_has_no_unexpected_status_and_batching_changes_nothing(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server(
        "--checkpoint", str(ckpt_dir), "--port", "0", env={"GAN_MAX_DELAY_MS": "10"}
    )
    base = server.wait_started()
    seeds = [11, 12, 13, 14]
    one, several = F.GOOD["gray_png"](), [F.GOOD[k]() for k in ("rgb_jpeg", "rgba_png", "gray_png")]
    with httpx.Client(base_url=base, timeout=30) as http:
        alone = {s: pixels(http.post("/generate", json={"seed": s}).content) for s in seeds}
        alone_scores = [
            r["logit"] for r in http.post("/score", files=files(*several)).json()["results"]
        ]

    statuses: Counter[str] = Counter()
    worst_gray = 0
    health_ms: list[float] = []
    score_errors: list[float] = []

    async def run() -> None:
        nonlocal worst_gray
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def step(c: int, i: int) -> None:
                nonlocal worst_gray
                kind = (c + i) % 4
                if kind == 0:
                    seed = seeds[(c + i) % len(seeds)]
                    r = await client.post("/generate", json={"seed": seed})
                    if r.status_code == 200:
                        worst_gray = max(
                            worst_gray, int(np.abs(pixels(r.content) - alone[seed]).max())
                        )
                elif kind == 1:
                    r = await client.post("/score", files=files(*several))
                    if r.status_code == 200:
                        got = [x["logit"] for x in r.json()["results"]]
                        score_errors.append(
                            max(abs(a - b) for a, b in zip(got, alone_scores, strict=True))
                        )
                elif kind == 2:
                    r = await client.post("/score", files=files(one))
                else:
                    r = await client.post("/generate", json={"n": 16, "format": "grid"})
                statuses[f"{kind} {r.status_code}"] += 1

            async def health() -> None:
                until = time.monotonic() + LOAD_SECONDS
                while time.monotonic() < until:
                    start = time.perf_counter()
                    r = await client.get("/health")
                    health_ms.append((time.perf_counter() - start) * 1000)
                    assert r.status_code == 200
                    await asyncio.sleep(0.05)

            await asyncio.gather(closed_loop(16, LOAD_SECONDS, step), health())

    asyncio.run(run())
    assert statuses and all(key.endswith(" 200") for key in statuses), statuses
    assert sum(statuses.values()) > 20, statuses
    assert worst_gray <= 1  # the same seed alone and under load: at most one gray level apart
    assert score_errors and max(score_errors) < 1e-4
    assert health_ms and max(health_ms) < 2000  # /health is never queued behind inference
    with httpx.Client(base_url=base, timeout=30) as http:
        text = http.get("/metrics").text
    scored = statuses["1 200"] + statuses["2 200"]
    served = metric(text, "gan_http_requests_total", method="POST", route="/score", status="200")
    assert served == scored + 1  # + the request alone before the load
    images = metric(text, "gan_batch_size_sum", model="discriminator")
    assert images == 3 * (statuses["1 200"] + 1) + statuses["2 200"]
    batches = metric(text, "gan_batch_size_count", model="discriminator")
    assert batches < served  # concurrent /score requests shared forward passes
    assert server.stop() == 0
    assert not any("Traceback" in line for line in server.lines)


def test_burst_above_the_queue_size_gets_503_then_recovers(
    start_server: Callable[..., ServerProcess], ckpt_dir: Path
) -> None:
    server = start_server("--checkpoint", str(ckpt_dir), "--port", "0", env={"GAN_QUEUE_SIZE": "2"})
    base = server.wait_started()
    png = F.GOOD["gray_png"]()
    statuses: Counter[int] = Counter()
    retry_after: set[str | None] = set()

    async def run() -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:

            async def step(c: int, i: int) -> None:  # no back-off: a real burst
                if c % 2:
                    r = await client.post("/score", files=files(png))
                else:
                    r = await client.post("/generate", json={"n": 8, "format": "json"})
                statuses[r.status_code] += 1
                if r.status_code == 503:
                    retry_after.add(r.headers.get("Retry-After"))

            await closed_loop(32, 1.5, step)

    asyncio.run(run())
    assert set(statuses) == {200, 503}, statuses  # nothing else: no 500, no dropped connection
    assert retry_after == {"1"}
    with httpx.Client(base_url=base, timeout=30) as http:
        after = http.post("/score", files=files(png))
        assert after.status_code == 200  # recovered by itself
        text = http.get("/metrics").text
        assert metric(text, "gan_requests_in_progress") == 0
    rejected = metric(
        text, "gan_rejected_requests_total", reason="queue_full", route="/score"
    ) + metric(text, "gan_rejected_requests_total", reason="queue_full", route="/generate")
    assert rejected == statuses[503]
    assert server.stop() == 0
