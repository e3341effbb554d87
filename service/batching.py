"""Dynamic batching: concurrent requests' images run through G or D together.

:class:`BatchScheduler` keeps one queue per model (``generator``, ``discriminator``), and one for
work that needs gradients (``gradient``: the langevin and pixel_ascent sampling methods, whose
jobs run alone, a chunk of at most ``max_batch`` images at a time). A request submits all its
rows (latents or model pixels) as one *job* and awaits its result. One worker task on the event
loop forms batches and runs each forward pass on the single inference thread (``run_batch``), so
the event loop never computes and at most one forward runs at a time:

* A batch holds rows of one model, at most ``max_batch`` of them (of one job for ``gradient``).
  Jobs are served round-robin: each job gives at most ``max_batch`` rows to a batch and, if rows
  are left, goes to the back of its queue, so one large request is run as chunks and cannot
  starve the others. Between the queues the worker picks the one whose first job has waited
  longest.
* When the worker is idle and rows arrive, it starts at once if the batch is full or no other
  request is on its way; otherwise (requests are being read or decoded: :meth:`arriving`) it waits
  up to ``max_delay_s`` for them to join. Rows that arrive while a forward runs join the next
  batch, so under load batches fill up without any waiting.
* The outputs are split back by row: every job gets exactly its rows, in order. Rows never
  depend on the other rows of a batch (G and D run in eval mode); the forward's floating-point
  result can still differ in the last bits between batch sizes (different BLAS/oneDNN kernels),
  which shows as at most one gray level in generated uint8 images.
* Back-pressure: at most ``queue_size`` jobs wait at once (:class:`QueueFull` beyond). A job that
  is not finished ``timeout_s`` after it was submitted raises :class:`QueueTimeout`; its rows
  that have not started are dropped (a chunk already running finishes, its output is discarded).

The worker task exists only while there is work: it starts on a submit and ends when the queues
are empty, so the scheduler works on whichever event loop calls it (tests use several).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from gan.classmix import Classes
    from service.metrics import ModelMetrics

logger = logging.getLogger("service")

GENERATOR = "generator"
DISCRIMINATOR = "discriminator"
#: Work that needs gradients (the langevin and pixel_ascent sampling methods): its jobs run
#: alone, never in a batch with another job's rows (their options are their own).
GRADIENT = "gradient"
QUEUES = (GENERATOR, DISCRIMINATOR, GRADIENT)


class QueueFull(Exception):
    """Too many requests are waiting for the model; answer 503 with Retry-After."""


class QueueTimeout(Exception):
    """A request waited for the model longer than its timeout; answer 504."""


@dataclass(frozen=True)
class SoloRows:
    """Rows of a job that runs alone (queue :data:`GRADIENT`): ``run(first, count)`` computes
    rows ``first .. first + count - 1`` of the job on the inference thread and returns their
    outputs ``[count, ...]``. A batch of that queue holds a part of one job only."""

    run: Callable[[int, int], torch.Tensor]
    count: int
    first: int = 0

    def part(self, first: int, count: int) -> SoloRows:
        return SoloRows(self.run, count, self.first + first)


# A job's input: rows ``[B, ...]``, or rows with one class label each ``([B, ...], [B])`` for a
# class-conditional model (a batch never mixes the two: a model is conditional or not; a
# generator's labels may be a ``gan.classmix.ClassMix``, two classes and a weight per row, which
# slices like a tensor), or
# :class:`SoloRows` for the gradient queue.


def _count(rows: torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows) -> int:
    if isinstance(rows, SoloRows):
        return rows.count
    return int((rows[0] if isinstance(rows, tuple) else rows).shape[0])


def _slice(
    rows: torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows, first: int, count: int
) -> torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows:
    if isinstance(rows, SoloRows):
        return rows.part(first, count)
    if isinstance(rows, tuple):
        return rows[0][first : first + count], rows[1][first : first + count]
    return rows[first : first + count]


@dataclass(eq=False)
class _Job:
    queue: str
    rows: torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows
    future: asyncio.Future[torch.Tensor]
    submitted: float  # loop time
    queued: float  # loop time of its last (re)queueing: round-robin order between the queues
    next_row: int = 0  # rows handed to batches so far
    finished_rows: int = 0
    started: bool = False
    parts: list[torch.Tensor] = field(default_factory=list)

    @property
    def total(self) -> int:
        return _count(self.rows)


class Arrival:
    """A request of one model that is being read or decoded (see :meth:`BatchScheduler.arriving`)."""

    def __init__(self, scheduler: BatchScheduler, queue: str) -> None:
        self._scheduler = scheduler
        self.queue = queue
        self._open = True
        scheduler._arriving[queue] += 1

    def settle(self) -> None:
        """It has arrived (submitted) or gave up: the worker stops waiting for it."""
        if self._open:
            self._open = False
            self._scheduler._arriving[self.queue] -= 1
            self._scheduler._wake()


RunBatch = Callable[
    [str, "list[torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows]"], "torch.Tensor"
]


class BatchScheduler:
    """Queues rows per model and runs them as batched forwards on ``executor`` (one thread)."""

    def __init__(
        self,
        run_batch: RunBatch,
        executor: Executor,
        *,
        max_batch: int = 64,
        max_delay_s: float = 0.005,
        queue_size: int = 64,
        timeout_s: float = 30.0,
        metrics: ModelMetrics | None = None,
    ) -> None:
        if max_batch < 1 or queue_size < 1 or max_delay_s < 0 or timeout_s <= 0:
            raise ValueError("max_batch and queue_size >= 1, max_delay_s >= 0, timeout_s > 0")
        self._run_batch = run_batch
        self._executor = executor
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.queue_size = queue_size
        self.timeout_s = timeout_s
        self.metrics = metrics
        self._queues: dict[str, collections.deque[_Job]] = {k: collections.deque() for k in QUEUES}
        # Kept in step with the queues (jobs in a queue have rows left to hand to a batch).
        self._jobs = dict.fromkeys(QUEUES, 0)
        self._rows = dict.fromkeys(QUEUES, 0)
        self._arriving = dict.fromkeys(QUEUES, 0)
        self._worker: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._closed = False

    # -- state -------------------------------------------------------------------------------

    def queued_jobs(self, queue: str | None = None) -> int:
        """Requests with rows waiting for a batch (of one model, or of both)."""
        return sum(self._jobs[k] for k in (QUEUES if queue is None else (queue,)))

    def queued_rows(self, queue: str) -> int:
        """Rows waiting for a batch."""
        return self._rows[queue]

    def _update_gauges(self, queue: str) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(queue).set(self._jobs[queue])
            self.metrics.queue_images.labels(queue).set(self._rows[queue])

    @contextmanager
    def arriving(self, queue: str) -> Iterator[Arrival]:
        """Announce a request of ``queue`` that will submit soon (its body is being read or
        decoded): an idle worker may wait up to ``max_delay_s`` for it to join the batch."""
        if queue not in QUEUES:
            raise ValueError(f"unknown model {queue!r}")
        arrival = Arrival(self, queue)
        try:
            yield arrival
        finally:
            arrival.settle()

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self,
        queue: str,
        rows: torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows,
        *,
        arrival: Arrival | None = None,
    ) -> torch.Tensor:
        """Run ``rows`` (``[B, ...]``, or ``([B, ...], labels [B])``; :class:`SoloRows` for
        :data:`GRADIENT`) through the model of queue ``queue``; the outputs ``[B, ...]`` in order."""
        if (queue == GRADIENT) != isinstance(rows, SoloRows):
            raise ValueError(f"{GRADIENT!r} jobs, and only they, take SoloRows")
        if arrival is not None:
            arrival.settle()
        if self._closed:
            raise RuntimeError("the inference engine is closed")
        if queue not in QUEUES:
            raise ValueError(f"unknown model {queue!r}")
        if _count(rows) < 1:
            raise ValueError("no rows to run")
        if self.queued_jobs() >= self.queue_size:
            raise QueueFull(
                f"{self.queued_jobs()} requests are waiting for the model (GAN_QUEUE_SIZE="
                f"{self.queue_size})"
            )
        loop = asyncio.get_running_loop()
        now = loop.time()
        job = _Job(queue, rows, loop.create_future(), now, now)
        self._queues[queue].append(job)
        self._jobs[queue] += 1
        self._rows[queue] += job.total
        self._update_gauges(queue)
        self._ensure_worker(loop)
        try:
            return await asyncio.wait_for(job.future, self.timeout_s)
        except asyncio.TimeoutError:
            raise QueueTimeout(
                f"waited {self.timeout_s:g} s for the model (GAN_REQUEST_TIMEOUT_S); its "
                "queued work was dropped"
            ) from None
        finally:
            if not job.future.done():  # cancelled from outside: drop it too
                job.future.cancel()
            if job.next_row < job.total:
                self._drop(job)

    def _drop(self, job: _Job) -> None:
        """Take a job that will not be finished out of its queue (timeout, cancellation)."""
        with suppress(ValueError):
            self._queues[job.queue].remove(job)
            self._jobs[job.queue] -= 1
            self._rows[job.queue] -= job.total - job.next_row
            job.next_row = job.total
        self._update_gauges(job.queue)
        self._wake()

    # -- the worker --------------------------------------------------------------------------

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._worker is None or self._worker.done() or self._worker.get_loop() is not loop:
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work(), name="gan-batch-worker")
        else:
            self._wake()

    def _next_queue(self) -> str | None:
        best: tuple[float, str] | None = None
        for queue in QUEUES:
            pending = self._queues[queue]
            if pending and (best is None or pending[0].queued < best[0]):
                best = (pending[0].queued, queue)
        return None if best is None else best[1]

    async def _gather(self, queue: str, loop: asyncio.AbstractEventLoop) -> None:
        """Wait (at most ``max_delay_s`` after the oldest job) while more rows are expected."""
        if self.max_delay_s <= 0 or self._wakeup is None:
            return
        pending = self._queues[queue]
        if not pending:
            return
        deadline = min(j.queued for j in pending) + self.max_delay_s
        while self._arriving[queue] > 0 and self._rows[queue] < self.max_batch and pending:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _take(self, queue: str, now: float) -> list[tuple[_Job, int, int]]:
        """Up to ``max_batch`` rows, round-robin over the jobs: ``(job, first row, count)``."""
        pending = self._queues[queue]
        taken: list[tuple[_Job, int, int]] = []
        requeue: list[_Job] = []
        space = self.max_batch
        while space and pending:
            job = pending.popleft()
            if job.future.done():  # timed out or failed, its submit() has not dropped it yet
                self._jobs[queue] -= 1
                self._rows[queue] -= job.total - job.next_row
                job.next_row = job.total
                continue
            count = min(job.total - job.next_row, space)
            taken.append((job, job.next_row, count))
            job.next_row += count
            self._rows[queue] -= count
            space -= count
            if job.next_row < job.total:
                job.queued = now
                requeue.append(job)
            else:
                self._jobs[queue] -= 1
            if queue == GRADIENT:
                break  # a gradient job's rows run alone
        pending.extend(requeue)
        return taken

    def _timed_run(
        self, queue: str, chunks: list[torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows]
    ) -> tuple[torch.Tensor, float]:
        """``run_batch`` and its duration (runs on the inference thread)."""
        start = time.perf_counter()
        out = self._run_batch(queue, chunks)
        return out, time.perf_counter() - start

    async def _work(self) -> None:
        try:
            await self._work_loop()
        except Exception as exc:  # a bug here must not leave requests waiting for nothing
            logger.exception("the batch worker failed; failing the queued requests")
            self._fail_queued(exc)

    async def _work_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            queue = self._next_queue()
            if queue is None:
                break
            await self._gather(queue, loop)
            taken = self._take(queue, loop.time())
            self._update_gauges(queue)
            if not taken:
                continue
            if self.metrics is not None:
                start = loop.time()
                for job, _, _ in taken:
                    if not job.started:
                        self.metrics.queue_wait.labels(queue).observe(start - job.submitted)
            for job, _, _ in taken:
                job.started = True
            chunks = [_slice(job.rows, first, count) for job, first, count in taken]
            try:
                out, seconds = await loop.run_in_executor(
                    self._executor, self._timed_run, queue, chunks
                )
            except Exception as exc:
                for job, _, _ in taken:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            if self.metrics is not None:
                self.metrics.inference.labels(queue).observe(seconds)
                self.metrics.batch_size.labels(queue).observe(sum(c for _, _, c in taken))
            offset = 0
            for job, _, count in taken:
                part = out[offset : offset + count]
                offset += count
                if job.future.done():
                    continue  # timed out while its chunk ran: discard
                job.parts.append(part)
                job.finished_rows += count
                if job.finished_rows == job.total:
                    result = job.parts[0] if len(job.parts) == 1 else _cat(job.parts)
                    job.future.set_result(result)

    def _fail_queued(self, exc: BaseException) -> None:
        for queue, pending in self._queues.items():
            self._jobs[queue] = self._rows[queue] = 0
            while pending:
                job = pending.popleft()
                if not job.future.done():
                    with suppress(RuntimeError):  # RuntimeError: its loop is closed already
                        job.future.get_loop().call_soon_threadsafe(_fail, job.future, exc)
            self._update_gauges(queue)

    def close(self) -> None:
        """Refuse new work and fail what is still queued (nothing is, after a graceful stop)."""
        self._closed = True
        self._fail_queued(RuntimeError("the inference engine is closed"))
        self._wake()


def _fail(future: asyncio.Future[torch.Tensor], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
    import torch

    return torch.cat(parts)
