"""The one reader and writer of checkpoints (used by training, evaluation and the service).

A checkpoint is a directory::

    config.json                 self-description: format version, model config, normalisation,
                                dataset, step, seed, training options, metrics, D's scores on
                                held-out real images (quantiles), SHA-256 of every weight file
    generator.safetensors       generator weights (the EMA copy when training used EMA)
    discriminator.safetensors   discriminator weights
    train_state.safetensors     optional: optimiser moments, raw G, RNG states (for --resume)
    train_state.json            optional: the non-tensor half of the training state

Nothing here unpickles anything: tensors travel as safetensors and everything else as JSON.
Writes are atomic: a checkpoint is assembled in a hidden temporary directory next to its final
place and renamed into it, so a crash mid-write never leaves a half-written checkpoint where a
good one was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from training.errors import UserError
from training.models import (
    NORMALISATION,
    ConfigError,
    ModelConfig,
    build_discriminator,
    build_generator,
)

FORMAT_NAME = "gan-checkpoint"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"
WEIGHT_FILES = (GENERATOR_FILE, DISCRIMINATOR_FILE)


class CheckpointError(UserError):
    """A checkpoint is missing, malformed or does not match its own description."""


# --------------------------------------------------------------------------------------------
# Small file helpers
# --------------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _state_dict_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``final`` only when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        # mkdtemp and safetensors create owner-only entries; use the usual umask-based modes
        # so a checkpoint written by one user (or container) can be served by another.
        umask = _current_umask()
        os.chmod(tmp, 0o777 & ~umask)
        for f in tmp.iterdir():
            os.chmod(f, 0o666 & ~umask)
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old: Path | None = None
        if final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------------------------
# Training state (for --resume): any nested structure of tensors and JSON scalars
# --------------------------------------------------------------------------------------------


def flatten_state(obj: Any) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a nested structure into (named tensors, JSON tree referencing them)."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(o: Any, path: str) -> Any:
        if isinstance(o, torch.Tensor):
            key = path or "root"
            tensors[key] = o.detach().to("cpu").contiguous().clone()
            return {"__tensor__": key}
        if isinstance(o, dict):
            if not all(isinstance(k, (str, int)) for k in o):
                raise TypeError(f"unsupported dict keys at {path!r}")
            return {
                "__dict__": [[k, walk(v, f"{path}.{k}" if path else str(k))] for k, v in o.items()]
            }
        if isinstance(o, tuple):
            return {"__tuple__": [walk(v, f"{path}.{i}") for i, v in enumerate(o)]}
        if isinstance(o, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(o)]
        if o is None or isinstance(o, (bool, int, float, str)):
            return o
        raise TypeError(f"cannot store {type(o).__name__} at {path!r} in a training state")

    return tensors, walk(obj, "")


def unflatten_state(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(tree, dict):
        if "__tensor__" in tree:
            return tensors[tree["__tensor__"]]
        if "__tuple__" in tree:
            return tuple(unflatten_state(v, tensors) for v in tree["__tuple__"])
        if "__dict__" in tree:
            return {k: unflatten_state(v, tensors) for k, v in tree["__dict__"]}
        raise CheckpointError(f"malformed training state entry: {sorted(tree)}")
    if isinstance(tree, list):
        return [unflatten_state(v, tensors) for v in tree]
    return tree


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def build_config(
    model_config: ModelConfig,
    *,
    step: int,
    seed: int | None = None,
    dataset: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    real_scores: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the self-describing part of ``config.json`` (file hashes are added on save)."""
    cfg: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model": model_config.to_dict(),
        "resolution": model_config.resolution,
        "channels": model_config.channels,
        "normalisation": NORMALISATION,
        "dataset": dataset or {},
        "step": int(step),
        "seed": seed,
        "training": training or {},
        "metrics": metrics or {},
        "real_scores": real_scores,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if extra:
        cfg.update(extra)
    return cfg


def save_checkpoint(
    path: str | os.PathLike[str],
    generator: nn.Module,
    discriminator: nn.Module,
    config: dict[str, Any],
    train_state: Any | None = None,
) -> Path:
    """Atomically write a checkpoint directory at ``path`` (replacing any previous one)."""
    final = Path(path)
    with atomic_directory(final) as tmp:
        save_file(_state_dict_cpu(generator), str(tmp / GENERATOR_FILE))
        save_file(_state_dict_cpu(discriminator), str(tmp / DISCRIMINATOR_FILE))
        files = {name: {"sha256": sha256_file(tmp / name)} for name in WEIGHT_FILES}
        if train_state is not None:
            tensors, tree = flatten_state(train_state)
            save_file(tensors, str(tmp / TRAIN_STATE_TENSORS))
            (tmp / TRAIN_STATE_JSON).write_text(json.dumps(tree))
        cfg = dict(config)
        cfg["files"] = files
        cfg["checkpoint_hash"] = checkpoint_hash_from_files(files)
        (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    return final


def copy_checkpoint(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, with_train_state: bool = True
) -> Path:
    """Atomically copy a checkpoint directory byte for byte (its recorded hashes stay valid).

    ``with_train_state=False`` leaves out the training state: the copy can be served, sampled
    and evaluated, but not resumed.
    """
    names = [CONFIG_FILE, *WEIGHT_FILES]
    if with_train_state:
        names += [TRAIN_STATE_TENSORS, TRAIN_STATE_JSON]
    source, final = Path(src), Path(dst)
    with atomic_directory(final) as tmp:
        for name in names:
            if (source / name).is_file():
                shutil.copyfile(source / name, tmp / name)
    return final


def checkpoint_hash_from_files(files: dict[str, dict[str, str]]) -> str:
    h = hashlib.sha256()
    for name in WEIGHT_FILES:
        h.update(name.encode())
        h.update(files[name]["sha256"].encode())
    return h.hexdigest()[:16]


def update_config(path: str | os.PathLike[str], updates: dict[str, Any]) -> dict[str, Any]:
    """Merge ``updates`` into a checkpoint's config.json (atomically); returns the new config."""
    cfg = read_config(path)
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    write_json_atomic(Path(path) / CONFIG_FILE, cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Reading and validation
# --------------------------------------------------------------------------------------------


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's ``config.json`` (without touching the weights)."""
    ckpt = Path(path)
    if not ckpt.exists():
        raise CheckpointError(f"checkpoint directory {ckpt} does not exist")
    if not ckpt.is_dir():
        raise CheckpointError(f"checkpoint {ckpt} is not a directory (expected a folder with {CONFIG_FILE})")
    cfg_path = ckpt / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path}: missing; a checkpoint directory needs {CONFIG_FILE}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    if cfg.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{cfg_path}: 'format' is {cfg.get('format')!r}, expected {FORMAT_NAME!r}")
    version = cfg.get("format_version")
    if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{cfg_path}: unsupported format_version {version!r} (this code reads 1..{FORMAT_VERSION})"
        )
    try:
        ModelConfig.from_dict(cfg.get("model"))  # type: ignore[arg-type]
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{cfg_path}: invalid 'model' section: {exc}") from exc
    if not isinstance(cfg.get("step"), int):
        raise CheckpointError(f"{cfg_path}: 'step' must be an integer")
    return cfg


def load_weights(
    file: Path, module: nn.Module, expected_sha: str | None, verify_hash: bool
) -> None:
    """Load a safetensors file into ``module`` after checking hash, names, shapes, finiteness."""
    if not file.is_file():
        raise CheckpointError(f"{file}: missing")
    if verify_hash and expected_sha is not None:
        actual = sha256_file(file)
        if actual != expected_sha:
            raise CheckpointError(
                f"{file}: SHA-256 {actual[:12]}… does not match {expected_sha[:12]}… recorded in "
                f"{CONFIG_FILE}; the file is corrupted or was replaced"
            )
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc})") from exc
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{file}: tensors do not match the architecture in {CONFIG_FILE} "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise CheckpointError(
                f"{file}: tensor {key!r} has shape {tuple(state[key].shape)}, the config implies "
                f"{tuple(tensor.shape)}"
            )
        if state[key].dtype.is_floating_point and not torch.isfinite(state[key]).all():
            raise CheckpointError(f"{file}: tensor {key!r} contains NaN or infinite values")
    module.load_state_dict(state)


@dataclass
class Checkpoint:
    """A loaded checkpoint: networks in eval mode plus their self-description."""

    path: Path
    config: dict[str, Any]
    model_config: ModelConfig
    generator: nn.Module
    discriminator: nn.Module
    train_state: Any | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.config["step"])

    @property
    def checkpoint_hash(self) -> str:
        return str(self.config.get("checkpoint_hash", "unknown"))

    @property
    def model_id(self) -> str:
        dataset = self.config.get("dataset")
        ds = str(dataset.get("name", "custom")) if isinstance(dataset, dict) else "custom"
        mc = self.model_config
        return f"{ds}-{mc.arch}-{mc.resolution}px-step{self.step}-{self.checkpoint_hash[:8]}"


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    with_train_state: bool = False,
    verify_hash: bool = True,
) -> Checkpoint:
    """Load and validate a checkpoint directory; raise :class:`CheckpointError` on any problem."""
    ckpt = Path(path)
    cfg = read_config(ckpt)
    model_config = ModelConfig.from_dict(cfg["model"])
    files = cfg.get("files", {}) if isinstance(cfg.get("files"), dict) else {}
    g = build_generator(model_config)
    d = build_discriminator(model_config)
    load_weights(ckpt / GENERATOR_FILE, g, files.get(GENERATOR_FILE, {}).get("sha256"), verify_hash)
    load_weights(
        ckpt / DISCRIMINATOR_FILE, d, files.get(DISCRIMINATOR_FILE, {}).get("sha256"), verify_hash
    )
    g.to(device).eval()
    d.to(device).eval()
    state = load_train_state(ckpt) if with_train_state else None
    return Checkpoint(ckpt, cfg, model_config, g, d, state)


def load_train_state(path: str | os.PathLike[str]) -> Any:
    ckpt = Path(path)
    tpath, jpath = ckpt / TRAIN_STATE_TENSORS, ckpt / TRAIN_STATE_JSON
    if not tpath.is_file() or not jpath.is_file():
        raise CheckpointError(
            f"{ckpt}: no training state ({TRAIN_STATE_TENSORS} + {TRAIN_STATE_JSON}); this "
            "checkpoint can be served or sampled but not resumed"
        )
    try:
        tensors = load_file(str(tpath))
        tree = json.loads(jpath.read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{ckpt}: unreadable training state ({exc})") from exc
    try:
        return unflatten_state(tree, tensors)
    except KeyError as exc:
        raise CheckpointError(f"{ckpt}: training state references missing tensor {exc}") from exc


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / GENERATOR_FILE).is_file()


# --------------------------------------------------------------------------------------------
# A run's checkpoint folder: keep the last N and the best by a metric
# --------------------------------------------------------------------------------------------


class CheckpointManager:
    """Manages ``<run>/checkpoints/step-XXXXXXXX`` directories plus ``best`` and ``latest``.

    ``latest`` and ``best`` are full copies (not symlinks), so each is a complete checkpoint on
    its own and survives the pruning of step directories.
    """

    def __init__(self, run_dir: Path, keep_last: int = 3, lower_is_better: bool = True) -> None:
        self.root = Path(run_dir) / "checkpoints"
        self.keep_last = max(1, keep_last)
        self.lower_is_better = lower_is_better

    def step_dir(self, step: int) -> Path:
        return self.root / f"step-{step:08d}"

    def step_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step-*") if p.is_dir() and is_checkpoint(p))

    def latest(self) -> Path | None:
        dirs = self.step_dirs()
        return dirs[-1] if dirs else None

    def save(
        self,
        step: int,
        generator: nn.Module,
        discriminator: nn.Module,
        config: dict[str, Any],
        train_state: Any | None,
        metric: float | None = None,
    ) -> Path:
        path = save_checkpoint(self.step_dir(step), generator, discriminator, config, train_state)
        copy_checkpoint(path, self.root / "latest")
        if metric is not None and self._is_better(metric):
            copy_checkpoint(path, self.root / "best")
        for old in self.step_dirs()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return path

    def _is_better(self, metric: float) -> bool:
        best = self.root / "best"
        if not is_checkpoint(best):
            return True
        try:
            prev = read_config(best).get("training_metric", {}).get("value")
        except CheckpointError:
            return True
        if prev is None:
            return True
        return metric < prev if self.lower_is_better else metric > prev
