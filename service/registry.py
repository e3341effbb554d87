"""Several models in one service, each reloadable at run time without a failed request.

A :class:`ModelRegistry` holds one :class:`Slot` per served model (``GAN_CHECKPOINTS``, or
``GAN_CHECKPOINT`` alone as before), each with its own :class:`~service.inference.InferenceEngine`
(its own inference thread and batch queues). The first model is the default: a request that names
no ``model`` gets it, exactly as a single-model server would.

Routes take an engine with :meth:`ModelRegistry.lease`: the engine is held for that request until
its response has been sent (:class:`service.admission.ModelRequestMiddleware` releases the
leases). A reload (:meth:`ModelRegistry.reload`) loads and verifies the checkpoint now at the
slot's path in a worker thread exactly as start-up does (hashes, config, a forward pass of G and
D with finite outputs, the warm-up), then swaps the slot's engine in one assignment: requests
already holding the old engine finish on it, new ones get the new one, and the old engine is
closed when its last lease is released. A checkpoint that cannot be served is refused
(:class:`ReloadRefused`) and the old engine keeps serving.

``GAN_WATCH_S`` runs :meth:`ModelRegistry.watch`: every few seconds each slot's path is
resolved (a run folder's ``best``, else ``latest``; a symlink's target) and fingerprinted by its
files' sizes and modification times; a changed fingerprint is reloaded (a new checkpoint hash is
swapped in; the same weights and config.json are kept), a refused one is logged and retried when the files change
again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread

from gan.errors import UserError
from gan.runs import resolve_checkpoint
from service.inference import InferenceEngine, StartupError
from service.settings import ModelSpec

logger = logging.getLogger("service")

#: (path, size, mtime_ns) of each file of a checkpoint folder, sorted.
Fingerprint = tuple[tuple[str, int, int], ...]

#: Builds the engine of one model from its resolved checkpoint folder (raises StartupError).
Loader = Callable[[ModelSpec, Path], InferenceEngine]


class UnknownModel(UserError):
    """A request named a model this service does not serve."""


class ReloadRefused(UserError):
    """The checkpoint at a model's path cannot be served; the old model keeps serving."""


def fingerprint(folder: Path) -> Fingerprint:
    """Sizes and modification times of the checkpoint files (cheap; no hashing)."""
    out = [(str(folder.resolve()), 0, 0)]  # a symlink (compose's /models/current) may move
    try:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                st = path.stat()
                out.append((str(path), st.st_size, st.st_mtime_ns))
    except OSError:
        return ()
    return tuple(out) if len(out) > 1 else ()


@dataclass
class Slot:
    """One served model: its name, configured path and current engine."""

    spec: ModelSpec
    engine: InferenceEngine
    checkpoint: Path  # the resolved folder the engine was loaded from
    default: bool
    loaded_at: float = field(default_factory=time.time)
    reloads: int = 0
    last_error: str | None = None
    fingerprint: Fingerprint = ()
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> dict[str, Any]:
        e = self.engine
        return {
            "name": self.name,
            "default": self.default,
            "model_id": e.info.model_id,
            "step": e.info.step,
            "checkpoint_hash": e.info.checkpoint_hash,
            "kind": e.kind,
            "conditional": bool(e.config.classes),
            "classes": list(e.config.classes),
            "resolution": e.resolution,
            "channels": e.channels,
            "z_dim": e.z_dim,
            "path": str(self.spec.path),
            "checkpoint": str(self.checkpoint),
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "last_reload_error": self.last_error,
        }


class ModelRegistry:
    """The served models by name; see the module doc."""

    def __init__(self, slots: list[Slot], loader: Loader) -> None:
        if not slots:
            raise ValueError("a registry needs at least one model")
        self.slots = {slot.name: slot for slot in slots}
        self.default = slots[0].name
        self.loader = loader
        self._leases: dict[int, int] = {}
        self._retired: dict[int, InferenceEngine] = {}
        self._closing: set[asyncio.Future[None]] = set()
        #: Called with the slot after every swap (metrics, body limits).
        self.on_swap: Callable[[Slot], None] | None = None

    @classmethod
    def load(cls, specs: list[ModelSpec], loader: Loader) -> ModelRegistry:
        """Load every model (start-up): the first failure closes what loaded and raises."""
        slots: list[Slot] = []
        try:
            for i, spec in enumerate(specs):
                folder, note = resolve_checkpoint(spec.path)
                if note:
                    logger.info(note, extra={"model_name": spec.name, "checkpoint": str(folder)})
                try:
                    engine = loader(spec, folder)
                except StartupError as exc:
                    prefix = f"model {spec.name!r}: " if len(specs) > 1 else ""
                    raise StartupError(f"{prefix}{exc}") from exc
                slots.append(Slot(spec, engine, folder, i == 0, fingerprint=fingerprint(folder)))
        except BaseException:
            for slot in slots:
                slot.engine.close()
            raise
        return cls(slots, loader)

    # -- requests ------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self.slots)

    def slot(self, name: str | None) -> Slot:
        """The slot of ``name`` (None: the default); :class:`UnknownModel` otherwise."""
        if name is None or name == "":
            return self.slots[self.default]
        slot = self.slots.get(name)
        if slot is None:
            raise UnknownModel(
                f"no model named {name!r}; this service serves {', '.join(map(repr, self.slots))} "
                f"(GET /models; leave model out for the default, {self.default!r})"
            )
        return slot

    def lease(self, name: str | None) -> tuple[InferenceEngine, Callable[[], None]]:
        """``name``'s current engine, held until the returned release is called (once)."""
        engine = self.slot(name).engine
        key = id(engine)
        self._leases[key] = self._leases.get(key, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._leases[key] - 1
            if left:
                self._leases[key] = left
                return
            del self._leases[key]
            retired = self._retired.pop(key, None)
            if retired is not None:
                self._close_later(retired)

        return engine, release

    def leases(self, engine: InferenceEngine) -> int:
        return self._leases.get(id(engine), 0)

    # -- reloads -------------------------------------------------------------------------

    async def reload(self, name: str, *, reason: str = "request") -> dict[str, Any]:
        """Load what is at ``name``'s path now and swap it in (see the module doc).

        Returns ``{"name", "old_model_id", "new_model_id", "swapped", "seconds"}``;
        :class:`ReloadRefused` when the checkpoint cannot be served."""
        slot = self.slot(name)
        async with slot.lock:
            started = time.perf_counter()
            old = slot.engine
            try:
                folder, _ = resolve_checkpoint(slot.spec.path)
                stamp = fingerprint(folder)
                engine = await anyio.to_thread.run_sync(self.loader, slot.spec, folder)
            except (StartupError, UserError, OSError) as exc:
                slot.last_error = str(exc)
                logger.warning(
                    "reload refused; the old model keeps serving",
                    extra={"model_name": name, "reason": reason, "error": str(exc)},
                )
                raise ReloadRefused(
                    f"model {name!r} was not reloaded: {exc}; it keeps serving {old.info.model_id}"
                ) from exc
            slot.fingerprint = stamp
            slot.last_error = None
            # New weights, or the same weights with a new config.json (calibration, encoder).
            swapped = (
                engine.info.checkpoint_hash != old.info.checkpoint_hash
                or engine.config.raw != old.config.raw
            )
            if swapped:
                slot.engine, slot.checkpoint = engine, folder  # the swap: one assignment
                slot.loaded_at = time.time()
                slot.reloads += 1
                self._retire(old)
                if self.on_swap is not None:
                    self.on_swap(slot)
            else:
                self._close_later(engine)  # the same checkpoint: keep the warm one
            seconds = time.perf_counter() - started
            logger.info(
                "model reloaded" if swapped else "model unchanged",
                extra={
                    "model_name": name,
                    "reason": reason,
                    "old_model_id": old.info.model_id,
                    "new_model_id": slot.engine.info.model_id,
                    "seconds": round(seconds, 3),
                },
            )
            return {
                "name": name,
                "old_model_id": old.info.model_id,
                "new_model_id": slot.engine.info.model_id,
                "swapped": swapped,
                "seconds": seconds,
            }

    def _retire(self, engine: InferenceEngine) -> None:
        if self.leases(engine):
            self._retired[id(engine)] = engine  # closed by its last release
        else:
            self._close_later(engine)

    def _close_later(self, engine: InferenceEngine) -> None:
        """Close ``engine`` in a worker thread (it joins its inference thread)."""
        future = asyncio.get_running_loop().run_in_executor(None, engine.close)
        self._closing.add(future)
        future.add_done_callback(self._closing.discard)

    async def watch(self, every_s: float, on_result: Callable[[str, bool], None]) -> None:
        """Poll every slot's path each ``every_s`` seconds and reload what changed."""
        while True:
            await asyncio.sleep(every_s)
            for name, slot in list(self.slots.items()):
                try:
                    folder, _ = resolve_checkpoint(slot.spec.path)
                except UserError:
                    continue  # nothing complete there yet
                stamp = fingerprint(folder)
                if not stamp or stamp == slot.fingerprint or slot.lock.locked():
                    continue
                try:
                    await self.reload(name, reason="watch")
                    on_result(name, True)
                except ReloadRefused:
                    slot.fingerprint = stamp  # retried when the files change again
                    on_result(name, False)

    async def aclose(self) -> None:
        """Close every engine (shutdown)."""
        for slot in self.slots.values():
            slot.engine.close()
        for engine in list(self._retired.values()):
            engine.close()
        self._retired.clear()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
