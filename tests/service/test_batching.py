"""Dynamic batching, back-pressure (503/504) and the Prometheus metrics, in process."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from gan.latents import latents_for_seeds
from service.batching import BatchScheduler, QueueFull, QueueTimeout
from service.inference import BatchingOptions, InferenceEngine
from service.metrics import Metrics
from tests.service import imagefiles as F
from tests.service.conftest import ClientFactory

# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def engine_factory(ckpt_dir: Path) -> Iterator[Callable[..., InferenceEngine]]:
    engines: list[InferenceEngine] = []

    def factory(**batching: Any) -> InferenceEngine:
        engine = InferenceEngine.load(
            ckpt_dir, batching=BatchingOptions(**batching), metrics=Metrics().for_model("tiny")
        )
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.close()


def record_batches(engine: InferenceEngine, kind: str) -> list[int]:
    """Spy on the engine's forward of ``kind``: the batch sizes it runs, in order."""
    sizes: list[int] = []
    name = "_generate_sync" if kind == "generator" else "_score_sync"
    original = getattr(engine, name)

    def spy(x: torch.Tensor) -> torch.Tensor:
        sizes.append(int(x.shape[0]))
        return original(x)

    setattr(engine, name, spy)
    return sizes


def block_forward(engine: InferenceEngine, kind: str) -> tuple[threading.Event, threading.Event]:
    """Make the forward of ``kind`` wait for ``release``; ``entered`` is set when it starts."""
    entered, release = threading.Event(), threading.Event()
    name = "_generate_sync" if kind == "generator" else "_score_sync"
    original = getattr(engine, name)

    def slow(x: torch.Tensor) -> torch.Tensor:
        entered.set()
        assert release.wait(30), "the test never released the forward pass"
        return original(x)

    setattr(engine, name, slow)
    return entered, release


def sample(client: TestClient, name: str, **labels: str) -> float:
    if "model" in labels:  # a network's samples: of the served model, "tiny"
        labels.setdefault("model_name", "tiny")
    value = client.app.state.metrics.registry.get_sample_value(name, labels)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


def png_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.int16)


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["r"] = fn()
        except Exception as exc:  # reported by the test that reads ``out``
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


# ----------------------------------------------------------------------------------------------
# batched == unbatched
# ----------------------------------------------------------------------------------------------


def test_concurrent_generate_calls_share_one_forward_and_match_alone(
    engine_factory: Callable[..., InferenceEngine],
) -> None:
    engine = engine_factory(max_batch=64)
    seeds = [[1, 2, 3], [40], [7, 8], [1000, 1001, 1002, 1003]]
    latents = [latents_for_seeds(s, engine.z_dim) for s in seeds]
    alone = [asyncio.run(engine.generate(z)) for z in latents]
    sizes = record_batches(engine, "generator")

    async def together() -> list[torch.Tensor]:
        return list(await asyncio.gather(*(engine.generate(z) for z in latents)))

    batched = asyncio.run(together())
    assert sizes == [10]  # all four requests in one forward
    for a, b, s in zip(alone, batched, seeds, strict=True):
        assert b.shape == (len(s), 1, 28, 28) and b.dtype == torch.uint8
        assert int((a.to(torch.int16) - b.to(torch.int16)).abs().max()) <= 1  # <= 1 gray level


def test_concurrent_score_calls_share_one_forward_and_match_alone(
    engine_factory: Callable[..., InferenceEngine],
) -> None:
    engine = engine_factory(max_batch=64)
    gen = torch.Generator().manual_seed(0)
    inputs = [
        torch.randint(0, 256, (n, 1, 28, 28), generator=gen, dtype=torch.uint8) for n in (1, 5, 2)
    ]
    alone = [asyncio.run(engine.score(x)) for x in inputs]
    sizes = record_batches(engine, "discriminator")

    async def together() -> list[torch.Tensor]:
        return list(await asyncio.gather(*(engine.score(x) for x in inputs)))

    batched = asyncio.run(together())
    assert sizes == [8]
    for a, b in zip(alone, batched, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_large_request_is_chunked_and_cannot_starve_others(
    engine_factory: Callable[..., InferenceEngine],
) -> None:
    engine = engine_factory(max_batch=4)
    big = latents_for_seeds(list(range(100, 111)), engine.z_dim)  # 11 rows
    small = latents_for_seeds([5], engine.z_dim)
    alone_big = asyncio.run(engine.generate(big))
    sizes = record_batches(engine, "generator")
    finished: list[str] = []

    async def run(name: str, z: torch.Tensor) -> torch.Tensor:
        out = await engine.generate(z)
        finished.append(name)
        return out

    async def main() -> tuple[torch.Tensor, torch.Tensor]:
        a, b = await asyncio.gather(run("big", big), run("small", small))
        return a, b

    out_big, out_small = asyncio.run(main())
    # Round robin: big gives 4 rows, then small + 3 more of big, then big's last 4.
    assert sizes == [4, 4, 4]
    assert finished == ["small", "big"]  # the small request did not wait for all of big
    assert int((out_big.to(torch.int16) - alone_big.to(torch.int16)).abs().max()) <= 1
    assert out_small.shape == (1, 1, 28, 28)


def test_batching_off_runs_one_image_per_forward(
    engine_factory: Callable[..., InferenceEngine],
) -> None:
    engine = engine_factory(max_batch=1)
    sizes = record_batches(engine, "discriminator")
    x = torch.zeros(3, 1, 28, 28, dtype=torch.uint8)
    assert asyncio.run(engine.score(x)).shape == (3,)
    assert sizes == [1, 1, 1]


def test_idle_worker_waits_for_announced_requests_only(
    engine_factory: Callable[..., InferenceEngine],
) -> None:
    engine = engine_factory(max_batch=64, max_delay_ms=2000)
    sizes = record_batches(engine, "generator")
    z = latents_for_seeds([1], engine.z_dim)

    async def lone() -> float:
        start = time.perf_counter()
        await engine.generate(z)
        return time.perf_counter() - start

    assert asyncio.run(lone()) < 1.0  # nobody announced: no waiting for the 2 s delay

    async def announced() -> None:
        with engine.arriving("generator") as arrival:
            first = asyncio.ensure_future(engine.generate(z))
            await asyncio.sleep(0.2)  # "decoding": the worker waits for it
            assert not first.done()
            await engine.generate(z, arrival=arrival)
        await first

    sizes.clear()
    asyncio.run(announced())
    assert sizes == [2]

    async def gives_up() -> float:  # an announced request that fails frees the worker at once
        start = time.perf_counter()
        with engine.arriving("generator"):
            first = asyncio.ensure_future(engine.generate(z))
            await asyncio.sleep(0.05)
        await first
        return time.perf_counter() - start

    assert asyncio.run(gives_up()) < 1.0


def test_scheduler_bounds_and_timeout_without_http() -> None:
    release = threading.Event()
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1)

    def run(kind: str, chunks: list[torch.Tensor]) -> torch.Tensor:
        assert release.wait(10)
        return torch.cat(chunks)

    sched = BatchScheduler(run, executor, max_batch=2, queue_size=1, timeout_s=0.2)

    async def main() -> None:
        first = asyncio.ensure_future(sched.submit("generator", torch.zeros(1, 2)))
        await asyncio.sleep(0.05)  # first is running (blocked); the queue is empty
        second = asyncio.ensure_future(sched.submit("generator", torch.zeros(1, 2)))
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFull, match="GAN_QUEUE_SIZE=1"):
            await sched.submit("discriminator", torch.zeros(1, 2))
        with pytest.raises(QueueTimeout, match="GAN_REQUEST_TIMEOUT_S"):
            await second
        assert sched.queued_jobs() == 0  # its work was dropped
        with pytest.raises(QueueTimeout):
            await first
        release.set()

    try:
        asyncio.run(main())
    finally:
        release.set()
        executor.shutdown()


# ----------------------------------------------------------------------------------------------
# over HTTP: batching, 503, 504, metrics
# ----------------------------------------------------------------------------------------------


def test_http_requests_under_concurrency_match_alone(make_client: ClientFactory) -> None:
    client = make_client(max_delay_ms=50)
    seeds = list(range(300, 316))
    alone = {s: client.post("/generate", json={"seed": s}).content for s in seeds}
    png = F.GOOD["gray_png"]()
    score_alone = client.post("/score", files=[("files", ("a.png", png, "image/png"))]).json()

    results: dict[int, bytes] = {}
    scores: list[float] = []

    def forwards() -> float:
        return sample(client, "gan_batch_size_count", model="generator") + sample(
            client, "gan_batch_size_count", model="discriminator"
        )

    before = forwards()

    def gen(seed: int) -> None:
        r = client.post("/generate", json={"seed": seed})
        assert r.status_code == 200
        results[seed] = r.content

    def score() -> None:
        r = client.post("/score", files=[("files", ("a.png", png, "image/png"))])
        assert r.status_code == 200
        scores.append(r.json()["results"][0]["logit"])

    threads = [threading.Thread(target=gen, args=(s,)) for s in seeds]
    threads += [threading.Thread(target=score) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == seeds and len(scores) == 8
    for s in seeds:
        diff = np.abs(png_pixels(results[s]) - png_pixels(alone[s]))
        assert int(diff.max()) <= 1, s
    for logit in scores:
        assert logit == pytest.approx(score_alone["results"][0]["logit"], abs=1e-5)
    assert forwards() - before < 24  # 24 concurrent requests: some shared a forward pass


def test_queue_full_is_503_at_once_and_the_server_recovers(make_client: ClientFactory) -> None:
    client = make_client(queue_size=2)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    entered, release = block_forward(engine, "discriminator")
    png = F.GOOD["gray_png"]()
    files = [("files", ("a.png", png, "image/png"))]
    workers = [in_thread(lambda: client.post("/score", files=files)) for _ in range(2)]
    try:
        assert entered.wait(10)
        wait_until(lambda: sample(client, "gan_requests_in_progress") == 2)
        start = time.perf_counter()
        r = client.post("/score", files=files)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert "GAN_QUEUE_SIZE=2" in r.json()["detail"] and r.headers["X-Request-ID"]
        g = client.post("/generate", json={"seed": 1})
        assert g.status_code == 503  # the limit covers both model routes
        assert time.perf_counter() - start < 2.0  # answered at once, not after the blocked work
        for path in ("/health", "/ready", "/metrics", "/info"):  # never queued behind inference
            assert client.get(path).status_code == 200, path
    finally:
        release.set()
        for thread, _ in workers:
            thread.join(30)
    assert [out["r"].status_code for _, out in workers] == [200, 200]
    assert client.post("/score", files=files).status_code == 200  # recovered by itself
    assert sample(client, "gan_rejected_requests_total", route="/score", reason="queue_full") == 1
    assert (
        sample(client, "gan_rejected_requests_total", route="/generate", reason="queue_full") == 1
    )
    assert (
        sample(client, "gan_http_requests_total", route="/score", method="POST", status="503") == 1
    )
    assert sample(client, "gan_requests_in_progress") == 0


def test_request_waiting_past_the_timeout_is_504_and_its_work_dropped(
    make_client: ClientFactory,
) -> None:
    client = make_client(request_timeout_s=0.3)
    engine = client.app.state.engine  # type: ignore[attr-defined]
    entered, release = block_forward(engine, "generator")
    calls: list[int] = []
    blocked = engine._generate_sync

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(int(x.shape[0]))
        return blocked(x)

    engine._generate_sync = counting
    try:
        first_thread, first = in_thread(lambda: client.post("/generate", json={"seed": 1}))
        assert entered.wait(10)
        start = time.perf_counter()
        second = client.post("/generate", json={"n": 4, "seed": 2, "format": "grid"})
        assert second.status_code == 504
        assert 0.25 < time.perf_counter() - start < 5.0
        assert "GAN_REQUEST_TIMEOUT_S" in second.json()["detail"]
        first_thread.join(10)
        assert first["r"].status_code == 504  # its forward is still blocked
        assert client.get("/health").status_code == 200
    finally:
        release.set()
    wait_until(lambda: engine.scheduler.queued_jobs() == 0)
    time.sleep(0.1)
    assert calls == [1]  # the second request's 4 images never ran
    engine._generate_sync = engine.__class__._generate_sync.__get__(engine)
    assert client.post("/generate", json={"seed": 3}).status_code == 200  # recovered
    assert sample(client, "gan_rejected_requests_total", route="/generate", reason="timeout") == 2


def test_metrics_move_when_requests_are_served(make_client: ClientFactory) -> None:
    client = make_client()
    first = client.get("/metrics")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    assert "gan_queue_depth" in first.text and "gan_batch_size" in first.text
    info = client.get("/info").json()["model"]
    assert (
        sample(
            client,
            "gan_model_info",
            model_name="tiny",
            default="true",
            model_id=info["model_id"],
            step=str(info["step"]),
            checkpoint_hash=info["checkpoint_hash"],
            device="cpu",
        )
        == 1
    )
    assert client.post("/generate", json={"n": 3, "seed": 1, "format": "grid"}).status_code == 200
    png = F.GOOD["gray_png"]()
    assert client.post("/score", files=[("files", ("a.png", png, "image/png"))]).status_code == 200
    client.get("/nope")
    labels = {"route": "/generate", "method": "POST", "status": "200"}
    assert sample(client, "gan_http_requests_total", **labels) == 1
    assert sample(client, "gan_http_request_duration_seconds_count", **labels) == 1
    assert sample(client, "gan_http_request_duration_seconds_sum", **labels) > 0
    assert sample(client, "gan_batch_size_sum", model="generator") == 3
    assert sample(client, "gan_batch_size_count", model="discriminator") == 1
    assert sample(client, "gan_inference_seconds_count", model="generator") == 1
    assert sample(client, "gan_inference_seconds_sum", model="discriminator") > 0
    assert sample(client, "gan_queue_wait_seconds_count", model="generator") == 1
    assert sample(client, "gan_queue_depth", model="generator") == 0
    assert sample(client, "gan_queue_images", model="discriminator") == 0
    assert (
        sample(client, "gan_http_requests_total", route="unmatched", method="GET", status="404")
        == 1
    )
    text = client.get("/metrics").text
    assert 'gan_http_requests_total{method="GET",route="/metrics",status="200"} 1.0' in text


def test_metrics_per_app_open_with_api_key_and_can_be_turned_off(
    make_client: ClientFactory,
) -> None:
    a = make_client(api_key="k3y")
    b = make_client()
    assert a.post("/generate", json={"seed": 1}).status_code == 401
    r = a.get("/metrics")  # no key needed
    assert r.status_code == 200
    assert sample(a, "gan_http_requests_total", route="/generate", method="POST", status="401") == 1
    assert sample(b, "gan_http_requests_total", route="/generate", method="POST", status="401") == 0
    off = make_client(metrics_enabled=False)
    assert off.get("/metrics").status_code == 404
    assert off.get("/health").status_code == 200


def test_thread_settings_are_applied_in_a_fresh_process() -> None:
    code = (
        "import torch; from service.inference import configure_torch_threads; "
        "configure_torch_threads(1, 1); configure_torch_threads(1, 2); "
        "print(torch.get_num_threads(), torch.get_num_interop_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1"]  # the second inter-op value is refused, with a log


def test_a_failing_forward_fails_its_requests_and_leaves_the_queue_clean() -> None:
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1)
    calls: list[int] = []

    def run(kind: str, chunks: list[torch.Tensor]) -> torch.Tensor:
        calls.append(sum(int(c.shape[0]) for c in chunks))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return torch.cat(chunks)

    sched = BatchScheduler(run, executor, max_batch=2, max_delay_s=0)

    async def main() -> None:
        with pytest.raises(RuntimeError, match="boom"):
            await sched.submit("discriminator", torch.zeros(5, 3))  # chunks of 2, 2, 1
        assert sched.queued_jobs() == 0 and sched.queued_rows("discriminator") == 0
        out = await sched.submit("discriminator", torch.ones(3, 3))  # still serving
        assert out.shape == (3, 3) and float(out.sum()) == 9.0

    try:
        asyncio.run(main())
    finally:
        executor.shutdown()
    assert calls == [2, 2, 1]  # the failed job's other chunks never ran


def test_a_bug_in_the_batch_worker_fails_requests_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    executor = ThreadPoolExecutor(1)
    sched = BatchScheduler(lambda kind, chunks: torch.cat(chunks), executor, timeout_s=30)

    def broken(kind: str, now: float) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(sched, "_take", broken)

    async def main() -> float:
        start = time.perf_counter()
        with pytest.raises(KeyError, match="bug"):
            await sched.submit("generator", torch.zeros(2, 3))
        return time.perf_counter() - start

    try:
        assert asyncio.run(main()) < 5.0  # not the 30 s timeout
    finally:
        executor.shutdown()
    assert sched.queued_jobs() == 0


def test_the_gil_switch_interval_is_shortened_while_serving(ckpt_dir: Path) -> None:
    from service.app import GIL_SWITCH_INTERVAL_S, create_app
    from service.settings import Settings

    before = sys.getswitchinterval()
    with TestClient(create_app(Settings(checkpoint=ckpt_dir))) as client:
        assert client.get("/ready").status_code == 200
        assert sys.getswitchinterval() == min(before, GIL_SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == before
