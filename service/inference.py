"""All model execution of the service lives behind :class:`InferenceEngine`.

Routes never touch the networks: they hand latents or model pixels to the engine and get uint8
images or logits back. The engine owns one worker thread; every forward pass runs there under
``torch.inference_mode``, so the event loop stays free (``/health`` answers while a large
request runs) and at most one forward pass runs at a time per process.

Contract:

* ``await engine.generate(z)``: float32 ``[B, z_dim]`` -> uint8 ``[B, C, R, R]`` on the CPU.
* ``await engine.score(x)``: uint8 ``[B, C, R, R]`` -> float32 logits ``[B]`` on the CPU.
* G and D forwards run in torch, or (``GAN_ENGINE=onnxruntime``, :mod:`service.onnx_engine`)
  in onnxruntime sessions exported at start-up; gradient jobs always run in torch.
* Results for one row never depend on the other rows: G and D run in eval mode (BatchNorm uses
  its running statistics), and latents are drawn per image before they reach the engine.
* A checkpoint without G (kind ebm) or D (vae, ae) has ``has_generator`` /
  ``has_discriminator`` False; the routes refuse what it cannot do (422) before calling in.
  An ebm's images come from ``sample`` with the plain method: its Langevin search on D, a
  gradient job like langevin's.
* ``await engine.sample(options, seeds, labels)``: images by a sampling method of
  :mod:`gan.samplers` with per-image statistics. The forward-only methods (plain, drs, mh) send
  their G and D passes through ``generate`` and ``score``, batched with everyone else's; the
  gradient methods (langevin, pixel_ascent) run as ``gradient`` jobs, a chunk of at most
  ``max_batch`` images at a time, on the same inference thread with gradients enabled (outside
  ``inference_mode``, for that call only).

Concurrent calls are batched by :class:`service.batching.BatchScheduler`: their rows are queued,
run together up to ``max_batch`` rows per forward and split back; see that module for the policy,
the back-pressure (:class:`~service.batching.QueueFull`) and the timeout
(:class:`~service.batching.QueueTimeout`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.errors import UserError
from gan.kinds import ModelKind, model_kind
from gan.samplers import MethodOptions, method_of, runs_gradients
from service.batching import (
    DISCRIMINATOR,
    GENERATOR,
    GRADIENT,
    Arrival,
    BatchScheduler,
    SoloRows,
)

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    import torch

    from gan.checkpoint import Calibration, Checkpoint, CheckpointConfig, RealScores
    from gan.classmix import Classes
    from gan.models import ModelConfig
    from gan.projection import Projection, ProjectOptions
    from gan.samplers.dispatch import Models
    from gan.samplers.results import GuidedResult
    from gan.samplers.steps import Forward, Steps
    from service.metrics import ModelMetrics

logger = logging.getLogger("service")


@dataclass(frozen=True)
class BatchingOptions:
    """How concurrent requests share forward passes (GAN_MAX_BATCH, GAN_MAX_DELAY_MS, ...)."""

    max_batch: int = 64
    max_delay_ms: float = 2.0
    queue_size: int = 64
    timeout_s: float = 30.0


def configure_torch_threads(intra: int, interop: int) -> None:
    """Apply GAN_TORCH_THREADS / GAN_TORCH_INTEROP_THREADS (0: keep torch's default).

    torch accepts the inter-op count only before its first parallel work, once per process; a
    second engine in the same process (tests) keeps the first value, with a log line.
    """
    import torch

    if intra > 0 and torch.get_num_threads() != intra:
        torch.set_num_threads(intra)
    if interop > 0 and torch.get_num_interop_threads() != interop:
        try:
            torch.set_num_interop_threads(interop)
        except RuntimeError as exc:
            logger.warning(
                "GAN_TORCH_INTEROP_THREADS=%d not applied: %s; torch keeps %d",
                interop,
                exc,
                torch.get_num_interop_threads(),
            )


class StartupError(UserError):
    """The service cannot start; the message names the file or setting and the problem."""


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced a response (reported in bodies and headers)."""

    model_id: str
    step: int
    checkpoint_hash: str

    def headers(self) -> dict[str, str]:
        return {
            "X-Model-Id": self.model_id,
            "X-Model-Step": str(self.step),
            "X-Checkpoint-Hash": self.checkpoint_hash,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "step": self.step,
            "checkpoint_hash": self.checkpoint_hash,
        }


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


class InferenceEngine:
    """Owns G and D of one checkpoint and runs them on a single worker thread."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        device: str = "cpu",
        batching: BatchingOptions | None = None,
        metrics: ModelMetrics | None = None,
        torch_threads: int = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.device = device
        self.config: CheckpointConfig = checkpoint.config
        self.model_config: ModelConfig = checkpoint.model_config
        self.info = ModelInfo(checkpoint.model_id, checkpoint.step, checkpoint.checkpoint_hash)
        self.real_scores: RealScores | None = checkpoint.config.real_scores
        self.calibration: Calibration | None = checkpoint.config.calibration
        self._generator = checkpoint.generator
        self._discriminator = checkpoint.discriminator
        # What plain forwards (generate, score) run: the torch networks, or the onnxruntime
        # sessions of GAN_ENGINE=onnxruntime (use_forwards); gradient jobs keep the networks.
        self.runtime = "torch"
        self._g_forward = checkpoint.generator
        self._d_forward = checkpoint.discriminator
        self.batching = batching if batching is not None else BatchingOptions()
        self.metrics = metrics
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="gan-inference",
            initializer=_init_inference_thread,
            initargs=(torch_threads,),
        )
        opts = self.batching
        self.scheduler = BatchScheduler(
            self._run_batch,
            self._executor,
            max_batch=opts.max_batch,
            max_delay_s=opts.max_delay_ms / 1000.0,
            queue_size=opts.queue_size,
            timeout_s=opts.timeout_s,
            metrics=metrics,
        )

    # -- loading ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        torch_threads: int = 0,
        interop_threads: int = 0,
        batching: BatchingOptions | None = None,
        metrics: ModelMetrics | None = None,
        runtime: str = "torch",
    ) -> InferenceEngine:
        """Load, validate and warm up a checkpoint; raise :class:`StartupError` on any problem.

        ``runtime`` (GAN_ENGINE): ``torch``, or ``onnxruntime`` to run plain G and D forwards
        through onnxruntime sessions (:mod:`service.onnx_engine`)."""
        import torch

        from gan.checkpoint import CheckpointError, load_checkpoint

        try:
            dev = torch.device(device)
        except (RuntimeError, ValueError) as exc:
            raise StartupError(f"GAN_DEVICE={device!r} is not a torch device ({exc})") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise StartupError(f"GAN_DEVICE={device!r}, but CUDA is not available here; use cpu")
        if dev.type == "mps" and not torch.backends.mps.is_available():
            raise StartupError(f"GAN_DEVICE={device!r}, but MPS is not available here; use cpu")
        configure_torch_threads(torch_threads, interop_threads)
        if runtime not in ("torch", "onnxruntime"):
            raise StartupError(f"GAN_ENGINE={runtime!r}: use torch or onnxruntime")
        if runtime == "onnxruntime":  # fail fast, before the checkpoint is read
            from service.onnx_engine import check_onnxruntime_installed

            check_onnxruntime_installed()
        try:
            ckpt = load_checkpoint(path, device=dev)
        except CheckpointError as exc:
            raise StartupError(str(exc)) from exc
        except (RuntimeError, OSError) as exc:  # e.g. a device that exists but cannot be used
            raise StartupError(f"{path}: cannot load the checkpoint on {device}: {exc}") from exc
        engine = cls(
            ckpt, device=str(dev), batching=batching, metrics=metrics, torch_threads=torch_threads
        )
        try:
            if runtime == "onnxruntime":
                from service.onnx_engine import use_onnxruntime

                use_onnxruntime(engine, torch_threads)
            engine._check_consistency()
        except StartupError:
            engine.close()
            raise
        engine._warm_up()
        return engine

    def _check_consistency(self) -> None:
        """One tiny forward pass of G and D (those the kind has): shapes must match what
        config.json promises."""
        import torch

        mc = self.model_config
        z = torch.zeros(1, mc.z_dim)
        y = torch.zeros(1, dtype=torch.int64) if mc.conditional else None
        expected = (1, mc.channels, mc.resolution, mc.resolution)
        images = torch.zeros(expected, dtype=torch.uint8)
        if self.has_generator:
            images = self._generate_sync(z, y)
        if tuple(images.shape) != expected:
            raise StartupError(
                f"{self.checkpoint.path}/generator.safetensors: the generator makes images of "
                f"shape {tuple(images.shape)[1:]}, config.json promises {expected[1:]}"
            )
        if not self.has_discriminator:
            return
        logits = self._score_sync(images, y)
        if tuple(logits.shape) != (1,) or not bool(torch.isfinite(logits).all()):
            raise StartupError(
                f"{self.checkpoint.path}/discriminator.safetensors: the discriminator returned "
                f"{tuple(logits.shape)} {logits.tolist()} for one image, expected one finite logit"
            )

    def _warm_up(self) -> None:
        """Run G and D once at the largest batch, so the first full batch is not slow."""
        import torch

        n = min(self.batching.max_batch, 64)
        if n > 1:
            started = time.perf_counter()
            y = torch.zeros(n, dtype=torch.int64) if self.model_config.conditional else None
            mc = self.model_config
            images = torch.zeros((n, mc.channels, mc.resolution, mc.resolution), dtype=torch.uint8)
            if self.has_generator:
                images = self._generate_sync(torch.zeros(n, self.z_dim), y)
            if self.has_discriminator:
                self._score_sync(images, y)
            logger.debug("warm-up at batch %d took %.3f s", n, time.perf_counter() - started)

    def use_forwards(
        self, generator: torch.nn.Module | None, discriminator: torch.nn.Module | None, runtime: str
    ) -> None:
        """Run plain forwards (``generate``, ``score`` and the forward-only methods' passes)
        through these modules (None: keep the network's own) from now on; gradient jobs, the
        encoder and ``models()`` keep the checkpoint's torch networks."""
        if generator is not None:
            self._g_forward = generator
        if discriminator is not None:
            self._d_forward = discriminator
        self.runtime = runtime

    # -- properties --------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """The checkpoint's model kind: gan, vae, ae or ebm (gan/kinds.py)."""
        return self.config.kind

    @property
    def model_kind(self) -> ModelKind:
        """The declaration of :attr:`kind` (gan/kinds.py): its networks and what it can do."""
        return model_kind(self.config.kind)

    @property
    def has_generator(self) -> bool:
        return self._generator is not None

    @property
    def has_discriminator(self) -> bool:
        return self._discriminator is not None

    @property
    def z_dim(self) -> int:
        return self.model_config.z_dim

    @property
    def resolution(self) -> int:
        return self.model_config.resolution

    @property
    def channels(self) -> int:
        return self.model_config.channels

    # -- execution ---------------------------------------------------------------------------

    def _run_batch(
        self, queue: str, chunks: list[torch.Tensor | tuple[torch.Tensor, Classes] | SoloRows]
    ) -> torch.Tensor:
        """One forward of the rows of several requests (runs on the inference thread)."""
        import torch

        def cat(parts: list[torch.Tensor]) -> torch.Tensor:
            return parts[0] if len(parts) == 1 else torch.cat(parts)

        if queue == GRADIENT:  # one job's chunk, run alone
            (solo,) = chunks
            assert isinstance(solo, SoloRows)
            return solo.run(solo.first, solo.count)
        labels: Classes | None = None
        if isinstance(chunks[0], tuple):  # a conditional model: every chunk has its labels
            pairs = [c for c in chunks if isinstance(c, tuple)]
            x, ys = cat([r for r, _ in pairs]), [y for _, y in pairs]
            plain = [y for y in ys if isinstance(y, torch.Tensor)]
            if len(plain) == len(ys):
                labels = cat(plain)
            else:  # some rows mix two classes (an interpolation path): all rows as mixes
                from gan.classmix import ClassMix

                labels = ClassMix.cat(ys)
        else:
            x = cat([c for c in chunks if not isinstance(c, (tuple, SoloRows))])
        if queue == GENERATOR:
            return self._generate_sync(x) if labels is None else self._generate_sync(x, labels)
        if labels is not None and not isinstance(labels, torch.Tensor):
            raise ValueError("D scores an image with one class, not a mix of two")
        return self._score_sync(x) if labels is None else self._score_sync(x, labels)

    def _generate_sync(self, z: torch.Tensor, labels: Classes | None = None) -> torch.Tensor:
        from gan.sampling import generate

        if self._g_forward is None:
            raise ValueError(f"this {self.kind} checkpoint has no generator")
        return generate(self._g_forward, z, labels, chunk=max(1, int(z.shape[0])))

    def _score_sync(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        from gan.sampling import score

        if self._d_forward is None:
            raise ValueError(f"this {self.kind} checkpoint has no discriminator")
        return score(self._d_forward, x, labels, chunk=max(1, int(x.shape[0])))

    def _labels_for(self, labels: Classes | None, rows: int) -> Classes | None:
        """Check that a conditional model gets one class (or class mix) per row and an
        unconditional none."""
        import torch

        k = self.model_config.num_classes
        if k == 0:
            if labels is not None:
                raise ValueError("this model is unconditional: it takes no labels")
            return None
        if labels is None or tuple(labels.shape) != (rows,):
            raise ValueError(f"this model is conditional: give one class label per row ({rows})")
        if int(labels.min()) < 0 or int(labels.max()) >= k:
            raise ValueError(f"class labels must lie in 0..{k - 1}")
        return labels if not isinstance(labels, torch.Tensor) else labels.long()

    def arriving(self, queue: str) -> AbstractContextManager[Arrival]:
        """Announce a request that will call :meth:`generate` (``"generator"``) or :meth:`score`
        (``"discriminator"``) once its input is ready; pass the arrival to that call."""
        return self.scheduler.arriving(queue)

    async def generate(
        self,
        z: torch.Tensor,
        labels: Classes | None = None,
        *,
        arrival: Arrival | None = None,
    ) -> torch.Tensor:
        """float32 latents ``[B, z_dim]`` (and int64 classes ``[B]``, or a
        :class:`~gan.classmix.ClassMix` of two classes per row, for a conditional model) -> uint8
        images ``[B, C, R, R]`` (CPU)."""
        if self._executor is None:
            raise RuntimeError("the inference engine is closed")
        if z.ndim != 2 or z.shape[1] != self.z_dim or z.shape[0] < 1:
            raise ValueError(f"expected latents [B, {self.z_dim}], got {list(z.shape)}")
        y = self._labels_for(labels, int(z.shape[0]))
        return await self.scheduler.submit(GENERATOR, z if y is None else (z, y), arrival=arrival)

    async def score(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        arrival: Arrival | None = None,
    ) -> torch.Tensor:
        """uint8 model pixels ``[B, C, R, R]`` (and int64 classes ``[B]`` for a conditional
        model) -> float32 logits ``[B]`` (CPU)."""
        import torch

        if self._executor is None:
            raise RuntimeError("the inference engine is closed")

        expected = [self.channels, self.resolution, self.resolution]
        if x.ndim != 4 or list(x.shape[1:]) != expected or x.dtype != torch.uint8 or x.shape[0] < 1:
            raise ValueError(
                f"expected uint8 pixels [B, {', '.join(map(str, expected))}], got "
                f"{x.dtype} {list(x.shape)}"
            )
        y = self._labels_for(labels, int(x.shape[0]))
        return await self.scheduler.submit(
            DISCRIMINATOR, x if y is None else (x, y), arrival=arrival
        )

    def models(self) -> Models:
        """G, D, their config and D's calibration, for :mod:`gan.samplers`."""
        from gan.samplers.dispatch import Models

        return Models(
            self._generator,
            self._discriminator,
            self.model_config,
            self.calibration,
            self.checkpoint.path,
            self.kind,
            self.config.ebm,
        )

    async def sample(
        self,
        options: MethodOptions,
        seeds: list[int],
        labels: torch.Tensor | None = None,
        *,
        truncation: float | None = None,
        arrival: Arrival | None = None,
    ) -> GuidedResult:
        """Images for these image seeds by a sampling method (:mod:`gan.samplers`), with each
        image's statistics; ``seconds`` is the time from this call to its end."""
        import anyio.to_thread
        import torch

        from gan.samplers.dispatch import method_steps, run_gradient_method
        from gan.samplers.results import GuidedResult
        from gan.samplers.steps import Forward

        if self._executor is None:
            raise RuntimeError("the inference engine is closed")
        if not seeds:
            raise ValueError("no seeds: give at least one image")
        started = time.perf_counter()
        y = self._labels_for(labels, len(seeds))
        if y is not None and not isinstance(y, torch.Tensor):
            raise ValueError("sampling methods take one class per image, not a class mix")
        models = self.models()
        if runs_gradients(self.kind, method_of(options)):  # an ebm's plain sampling too
            parts: dict[int, GuidedResult] = {}

            def run(first: int, count: int) -> torch.Tensor:  # on the inference thread
                part = run_gradient_method(
                    models,
                    options,
                    seeds[first : first + count],
                    None if y is None else y[first : first + count],
                    truncation=truncation,
                )
                parts[first] = part
                return part.images

            await self.scheduler.submit(GRADIENT, SoloRows(run, len(seeds)), arrival=arrival)
            result = GuidedResult.concat([parts[k] for k in sorted(parts)])
        else:
            steps = method_steps(models, options, seeds, y, truncation=truncation)
            # The step machine's own work (latents of proposals, acceptance decisions) runs in a
            # worker thread; its forward passes go through the batcher like anyone's.
            item = await anyio.to_thread.run_sync(_advance, steps, None)
            while isinstance(item, Forward):
                if item.model == GENERATOR:
                    out = await self.generate(item.rows, item.labels, arrival=arrival)
                else:
                    out = await self.score(item.rows, item.labels, arrival=arrival)
                arrival = None
                item = await anyio.to_thread.run_sync(_advance, steps, out)
            result = item
        result.seconds = time.perf_counter() - started
        return result

    @property
    def encoder(self) -> torch.nn.Module | None:
        """The checkpoint's encoder: a GAN's optional one or an auto-encoder's (projection's
        start)."""
        return self.checkpoint.encoder

    @property
    def can_classify(self) -> bool:
        """The checkpoint's encoder has a class head (a conditional GAN's, from
        gan-train-encoder): :meth:`classify` reads an image's class with it."""
        from gan.models import LatentEncoder

        enc = self.encoder
        return isinstance(enc, LatentEncoder) and enc.classes is not None

    async def classify(self, x: torch.Tensor, *, arrival: Arrival | None = None) -> torch.Tensor:
        """uint8 model pixels ``[B, C, R, R]`` -> the encoder's class probabilities ``[B, K]``
        (CPU): one forward pass, run alone on the inference thread like a projection. D is
        no classifier (a projection D names the true digit of 1 % of real MNIST test digits);
        the encoder, trained on G's labelled samples, reads 96 % of them right."""
        import torch

        from gan.models import to_model_range
        from gan.projection import encoder_guess

        if self._executor is None:
            raise RuntimeError("the inference engine is closed")
        if not self.can_classify:
            raise ValueError("this checkpoint has no encoder with a class head")
        out: dict[int, torch.Tensor] = {}

        def run(first: int, count: int) -> torch.Tensor:  # on the inference thread
            device = next(self.encoder.parameters()).device  # type: ignore[union-attr]
            rows = to_model_range(x[first : first + count].to(device))
            _, logits = encoder_guess(self.encoder, rows)
            assert logits is not None
            out[first] = logits.softmax(1).cpu()
            return out[first]

        await self.scheduler.submit(GRADIENT, SoloRows(run, int(x.shape[0])), arrival=arrival)
        return torch.cat([out[first] for first in sorted(out)])

    @property
    def projection_distance(self) -> str:
        """The name of the perceptual distance projections report (gan/projection.py)."""
        from gan.projection import feature_network

        return feature_network(self._discriminator, self.encoder)[1]

    async def project(
        self,
        targets: torch.Tensor,
        labels: list[int | None],
        options: ProjectOptions,
        *,
        arrival: Arrival | None = None,
    ) -> list[Projection]:
        """Project uint8 images ``[N, C, R, R]`` into G's latent space (gan/projection.py): a
        gradient job, run alone on the inference thread like langevin's."""
        from gan.projection import check_projectable, project

        if self._executor is None:
            raise RuntimeError("the inference engine is closed")
        check_projectable(self.kind)
        generator = self._generator
        assert generator is not None
        parts: dict[int, list[Projection]] = {}

        def run(first: int, count: int) -> torch.Tensor:  # on the inference thread
            part = project(
                generator,
                self.model_config,
                targets[first : first + count],
                labels[first : first + count],
                options,
                discriminator=self._discriminator,
                encoder=self.encoder,
            )
            parts[first] = part
            import torch

            return torch.stack([r.image for r in part])

        await self.scheduler.submit(GRADIENT, SoloRows(run, int(targets.shape[0])), arrival=arrival)
        return [r for first in sorted(parts) for r in parts[first]]

    def close(self) -> None:
        """Finish the running forward pass (if any) and stop the worker thread."""
        self.scheduler.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None


def _advance(steps: Steps, value: torch.Tensor | None) -> Forward | GuidedResult:
    """The step machine's next forward request, or its result when it is done."""
    try:
        return next(steps) if value is None else steps.send(value)
    except StopIteration as stop:
        result: GuidedResult = stop.value
        return result


def _init_inference_thread(torch_threads: int) -> None:
    """The inference thread uses the configured intra-op thread count, and shows its name to
    the OS (``top -H``, ``/proc/<pid>/task/*/comm``) on Linux."""
    if torch_threads > 0:
        import torch

        torch.set_num_threads(torch_threads)
    if sys.platform == "linux":
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None)
            libc.prctl(15, b"gan-inference", 0, 0, 0)  # PR_SET_NAME
