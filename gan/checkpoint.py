"""The one reader and writer of checkpoints (used by training, evaluation and the service).

A checkpoint is a directory::

    config.json                 self-description: format version, model config, normalisation,
                                dataset, step, seed, training options, metrics, D's scores on
                                held-out real images (quantiles), the calibration of D's logit
                                with DRS's pilot statistics (optional), how D was refit after
                                training (optional: ``refit``), SHA-256 of every weight file
    generator.safetensors       generator weights (the EMA copy when training used EMA); the
                                decoder of an auto-encoder; absent for kind ebm
    discriminator.safetensors   discriminator weights; absent for kinds vae and ae
    encoder.safetensors         the encoder of an auto-encoder (kinds vae and ae only)
    train_state.safetensors     optional: optimiser moments, raw G, RNG states (for --resume)
    train_state.json            optional: the non-tensor half of the training state

``kind`` in ``config.json`` says which networks a checkpoint holds (:data:`gan.models.
MODEL_KINDS`): ``gan`` (G and D; also every checkpoint without the field), ``vae`` and ``ae``
(decoder and encoder), ``ebm`` (D, with the Langevin search it samples with under ``ebm``).
GAN checkpoints are written as format version 1, unchanged; the other kinds as version 2, so
that older readers refuse them with a clear message instead of a missing file.

Nothing here unpickles anything: tensors travel as safetensors and everything else as JSON.
Writes are atomic (:func:`gan.io.atomic_directory`): a checkpoint is assembled in a hidden
temporary directory next to its final place and renamed into it, so a crash mid-write never
leaves a half-written checkpoint where a good one was.

Reading validates everything once, here: the format version, the model config, the
``real_scores`` quantiles, the ``calibration`` and the ``refit`` record (their types,
:class:`~gan.calibration.RealScores`, :class:`~gan.calibration.Calibration` and
:class:`~gan.calibration.Refit`, live in :mod:`gan.calibration`), every
tensor's name, shape and finiteness and the file hashes. A loaded :class:`Checkpoint` carries a
typed :class:`CheckpointConfig`; nobody else parses ``config.json``. The training state's tree
(:func:`~gan.train_state.flatten_state`, :func:`~gan.train_state.load_train_state`) is
:mod:`gan.train_state`'s.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from gan.calibration import Calibration as Calibration
from gan.calibration import RealScores as RealScores
from gan.calibration import Refit as Refit
from gan.dataset_info import portable_dataset_info
from gan.errors import CheckpointError as CheckpointError
from gan.errors import UserError
from gan.io import atomic_directory, sha256_file, write_json_atomic
from gan.kinds import DEFAULT_KIND, UnknownKind, model_kind
from gan.models import (
    NORMALISATION,
    ConfigError,
    ModelConfig,
    build_discriminator,
    build_encoder,
    build_generator,
    build_latent_encoder,
)
from gan.runs import CONFIG_FILE, run_folder_hint
from gan.samplers import EBMSearch, MethodError
from gan.train_state import TRAIN_STATE_JSON, TRAIN_STATE_TENSORS
from gan.train_state import flatten_state as flatten_state
from gan.train_state import load_train_state as load_train_state
from gan.train_state import unflatten_state as unflatten_state

FORMAT_NAME = "gan-checkpoint"
#: The newest version this code writes and reads: 1 for GANs (unchanged since version 1), 2 for
#: the other kinds.
FORMAT_VERSION = 2
GAN_FORMAT_VERSION = 1  # what kind gan writes (gan.kinds declares each kind's version)
# CONFIG_FILE comes from gan.runs (torch-free), the one place it is spelt
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
ENCODER_FILE = "encoder.safetensors"
WEIGHT_FILES = (GENERATOR_FILE, DISCRIMINATOR_FILE, ENCODER_FILE)


NETWORK_FILES = {
    "generator": GENERATOR_FILE,
    "discriminator": DISCRIMINATOR_FILE,
    "encoder": ENCODER_FILE,
}


def weight_files(kind: str) -> tuple[str, ...]:
    """The weight files a checkpoint of ``kind`` holds, in hashing order."""
    networks = model_kind(kind).networks
    return tuple(NETWORK_FILES[n] for n in NETWORK_FILES if n in networks)


def optional_files(kind: str) -> tuple[str, ...]:
    """The weight files a checkpoint of ``kind`` may add (a GAN's encoder)."""
    optional = model_kind(kind).optional
    return tuple(NETWORK_FILES[n] for n in NETWORK_FILES if n in optional)


def _state_dict_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# The typed config
# --------------------------------------------------------------------------------------------


def _object(cfg: dict[str, Any], key: str) -> dict[str, Any]:
    value = cfg.get(key)
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class CheckpointConfig:
    """``config.json`` of a checkpoint, validated and typed.

    ``dataset``, ``training`` and ``metrics`` are records written by the trainer and by
    ``gan-eval --write`` for people to read; the code relies on none of their keys. ``raw`` is
    the whole file as read, for writers that update it (:func:`update_config`).
    """

    format_version: int
    model: ModelConfig
    step: int
    seed: int | None
    dataset: dict[str, Any]
    training: dict[str, Any]
    metrics: dict[str, Any]
    real_scores: RealScores | None
    calibration: Calibration | None  # of D's logit, with DRS's pilot statistics; None if absent
    classes: tuple[str, ...]  # class names of a conditional model (index = class); () if none
    normalisation: dict[str, Any]
    created_at: str | None
    checkpoint_hash: str
    file_hashes: dict[str, str]  # weight file name -> SHA-256
    raw: dict[str, Any] = field(repr=False, compare=False)
    kind: str = "gan"  # gan, vae, ae or ebm (gan/models.py MODEL_KINDS)
    ebm: EBMSearch | None = None  # kind ebm: the Langevin search it samples with
    refit: Refit | None = None  # how D was refit after training (gan-calibrate --refit)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any], where: str) -> CheckpointConfig:
        """Validate a parsed ``config.json``; ``where`` names the file in errors."""
        version = check_format(cfg, where, FORMAT_NAME, FORMAT_VERSION, CheckpointError)
        try:
            model = ModelConfig.from_dict(cfg.get("model"))  # type: ignore[arg-type]
        except (ConfigError, TypeError) as exc:
            raise CheckpointError(f"{where}: invalid 'model' section: {exc}") from exc
        step = cfg.get("step")
        if isinstance(step, bool) or not isinstance(step, int):
            raise CheckpointError(f"{where}: 'step' must be an integer")
        for key in ("resolution", "channels"):
            value = cfg.get(key)
            if value is not None and value != getattr(model, key):
                raise CheckpointError(
                    f"{where}: '{key}' is {value!r} but the 'model' section says "
                    f"{getattr(model, key)!r}; the checkpoint is inconsistent"
                )
        seed = cfg.get("seed")
        classes = cfg.get("classes") or []
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise CheckpointError(f"{where}: 'classes' must be a list of class names")
        if len(classes) != model.num_classes:
            raise CheckpointError(
                f"{where}: 'classes' names {len(classes)} classes but the model has "
                f"num_classes = {model.num_classes}; the checkpoint is inconsistent"
            )
        hashes: dict[str, str] = {}
        for name, entry in _object(cfg, "files").items():
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
                hashes[str(name)] = entry["sha256"]
        created = cfg.get("created_at")
        kind = cfg.get("kind", DEFAULT_KIND)
        try:
            declared = model_kind(kind)
        except UnknownKind as exc:
            raise CheckpointError(f"{where}: {exc}") from None
        if version < declared.format_version:
            raise CheckpointError(
                f"{where}: kind {kind!r} needs format_version {declared.format_version}, "
                f"got {version}"
            )
        if model.conditional and not declared.conditional:
            raise CheckpointError(
                f"{where}: kind {kind!r} is unconditional only, the model has classes"
            )
        ebm = None
        if declared.plain == "langevin_search":
            try:
                ebm = EBMSearch.from_config(cfg.get("ebm", {}))
            except MethodError as exc:
                raise CheckpointError(f"{where}: {exc}") from exc
        return cls(
            format_version=version,
            model=model,
            step=step,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            dataset=_object(cfg, "dataset"),
            training=_object(cfg, "training"),
            metrics=_object(cfg, "metrics"),
            real_scores=RealScores.from_config(cfg.get("real_scores"), where),
            calibration=Calibration.from_config(cfg.get("calibration"), where),
            classes=tuple(classes),
            normalisation=_object(cfg, "normalisation"),
            created_at=created if isinstance(created, str) else None,
            checkpoint_hash=str(cfg.get("checkpoint_hash", "unknown")),
            file_hashes=hashes,
            raw=cfg,
            kind=kind,
            ebm=ebm,
            refit=Refit.from_config(cfg.get("refit"), where),
        )

    @property
    def dataset_name(self) -> str:
        return str(self.dataset.get("name", "custom"))

    @property
    def model_id(self) -> str:
        mc = self.model
        return (
            f"{self.dataset_name}-{mc.arch}-{mc.resolution}px-step{self.step}-"
            f"{self.checkpoint_hash[:8]}"
        )


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
    classes: list[str] | None = None,
    calibration: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    kind: str = "gan",
    ebm: EBMSearch | None = None,
) -> dict[str, Any]:
    """Assemble the self-describing part of ``config.json`` (file hashes are added on save).

    ``kind`` says which networks the checkpoint holds; an ``ebm`` one records its Langevin
    search (``ebm``, defaults when None)."""
    try:
        declared = model_kind(kind)
    except UnknownKind as exc:
        raise CheckpointError(str(exc)) from None
    cfg: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": declared.format_version,
        "model": model_config.to_dict(),
        "resolution": model_config.resolution,
        "channels": model_config.channels,
        "normalisation": NORMALISATION,
        "dataset": portable_dataset_info(dataset or {}),
        "step": int(step),
        "seed": seed,
        "training": training or {},
        "metrics": metrics or {},
        "real_scores": real_scores,
        "calibration": calibration,
        "classes": list(classes or []),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if kind != DEFAULT_KIND:  # GAN configs stay exactly as version 1 wrote them
        cfg["kind"] = kind
    if declared.plain == "langevin_search":
        cfg["ebm"] = (ebm or EBMSearch()).to_config()
    if extra:
        cfg.update(extra)
    return cfg


def save_checkpoint(
    path: str | os.PathLike[str],
    generator: nn.Module | None,
    discriminator: nn.Module | None,
    config: dict[str, Any],
    train_state: Any | None = None,
    encoder: nn.Module | None = None,
) -> Path:
    """Atomically write a checkpoint directory at ``path`` (replacing any previous one).

    The networks given must be exactly those of ``config["kind"]`` (default gan: G and D;
    vae / ae: G, the decoder, and the encoder; ebm: D).

    A failed write (a full disk, say) leaves the previous checkpoint in place, removes the
    partial temporary and raises one :class:`CheckpointError` naming the folder and the space
    the checkpoint needs.
    """
    final = Path(path)
    kind = config.get("kind", "gan")
    given = {GENERATOR_FILE: generator, DISCRIMINATOR_FILE: discriminator, ENCODER_FILE: encoder}
    wanted = weight_files(kind)
    optional = optional_files(kind)
    for name, module in given.items():
        if name in optional:
            continue
        if (module is not None) != (name in wanted):
            raise ValueError(
                f"a{'n' if kind[0] in 'ae' else ''} {kind} checkpoint holds {', '.join(wanted)}; got "
                f"{', '.join(n for n, m in given.items() if m is not None)}"
            )
    states = {name: _state_dict_cpu(m) for name, m in given.items() if m is not None}
    tensors, tree = flatten_state(train_state) if train_state is not None else ({}, None)
    try:
        with atomic_directory(final) as tmp:
            for name, state in states.items():
                save_file(state, str(tmp / name))
            files = {name: {"sha256": sha256_file(tmp / name)} for name in states}
            if train_state is not None:
                save_file(tensors, str(tmp / TRAIN_STATE_TENSORS))
                (tmp / TRAIN_STATE_JSON).write_text(json.dumps(tree))
            cfg = dict(config)
            cfg["files"] = files
            cfg["checkpoint_hash"] = checkpoint_hash_from_files(files, kind)
            (tmp / CONFIG_FILE).write_text(json.dumps(cfg, indent=2) + "\n")
    except (OSError, SafetensorError) as exc:
        need = sum(
            t.numel() * t.element_size() for d in (*states.values(), tensors) for t in d.values()
        )
        full = (
            getattr(exc, "errno", None) == errno.ENOSPC
            or "StorageFull" in str(exc)
            or ("No space left" in str(exc))
        )
        why = "no space left on the device" if full else f"{type(exc).__name__}: {exc}"
        raise CheckpointError(
            f"cannot write checkpoint {final}: {why}; it needs about {need / 1e6:.0f} MB in "
            f"{final.parent} (the previous checkpoint there, if any, is intact)"
        ) from exc
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
                _link_or_copy(source / name, tmp / name)
    return final


def save_with_discriminator(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    discriminator: nn.Module,
    updates: dict[str, Any],
) -> dict[str, Any]:
    """Atomically write a new GAN checkpoint at ``path``: the ``source`` checkpoint's G (and
    its encoder, if any) byte for byte (hard links where possible), ``discriminator``'s weights
    in place of its D, and the source's ``config.json`` with ``updates`` merged in (each key
    replaced whole) and the new file hashes and checkpoint hash (so a new model id: D changed).
    The source's training state is left out (its optimiser moments belong to the old D). The
    new config is validated before anything is renamed into place; a failure leaves no folder
    at ``path`` (or the one there before). Returns the written config."""
    src, final = Path(source), Path(path)
    cfg = read_checkpoint_config(src)
    if cfg.kind != DEFAULT_KIND:
        raise CheckpointError(
            f"{src} is a {cfg.kind} checkpoint: only a GAN's discriminator (beside its G) can be "
            "replaced"
        )
    raw = {k: v for k, v in cfg.raw.items() if k not in ("files", "checkpoint_hash")}
    raw.update(updates)
    kept = [n for n in (GENERATOR_FILE, ENCODER_FILE) if n in cfg.file_hashes]
    state = _state_dict_cpu(discriminator)
    try:
        with atomic_directory(final) as tmp:
            files: dict[str, dict[str, str]] = {}
            for name in kept:
                _link_or_copy(src / name, tmp / name)
                files[name] = {"sha256": sha256_file(tmp / name)}
                if files[name]["sha256"] != cfg.file_hashes[name]:
                    raise CheckpointError(
                        f"{src / name}: SHA-256 does not match the one recorded in "
                        f"{CONFIG_FILE}; the source checkpoint is corrupted"
                    )
            save_file(state, str(tmp / DISCRIMINATOR_FILE))
            files[DISCRIMINATOR_FILE] = {"sha256": sha256_file(tmp / DISCRIMINATOR_FILE)}
            raw["files"] = {n: files[n] for n in WEIGHT_FILES if n in files}
            raw["checkpoint_hash"] = checkpoint_hash_from_files(raw["files"])
            CheckpointConfig.from_dict(raw, str(final / CONFIG_FILE))  # never write a bad one
            (tmp / CONFIG_FILE).write_text(json.dumps(raw, indent=2) + "\n")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot write checkpoint {final}: {type(exc).__name__}: {exc} (the source "
            f"checkpoint {src} is intact)"
        ) from exc
    return raw


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the filesystem allows (no second copy of the bytes; files are only
    ever replaced by a rename, never rewritten in place, so linked copies cannot diverge),
    else a byte copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def checkpoint_hash_from_files(files: dict[str, dict[str, str]], kind: str = DEFAULT_KIND) -> str:
    """Hash of the hashes of the kind's own weight files (in WEIGHT_FILES order; a GAN's is the
    same as version 1 computed). An optional network (a GAN's encoder) is left out: adding one
    keeps the model id."""
    own = weight_files(kind)
    h = hashlib.sha256()
    for name in (n for n in WEIGHT_FILES if n in files and n in own):
        h.update(name.encode())
        h.update(files[name]["sha256"].encode())
    return h.hexdigest()[:16]


def update_config(
    path: str | os.PathLike[str], updates: dict[str, Any], *, replace: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Merge ``updates`` into a checkpoint's config.json (atomically); returns the new config.

    An object in ``updates`` is merged into the stored object of the same key, unless the key is
    in ``replace`` (then it replaces it whole). The file is written to a temporary file renamed
    into place: a failure at any point leaves the old config.json. Only ``config.json`` changes:
    the weight files, their hashes and the checkpoint hash stay.
    """
    cfg = read_config(path)
    for key, value in updates.items():
        if key not in replace and isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    write_json_atomic(Path(path) / CONFIG_FILE, cfg)
    return cfg


# --------------------------------------------------------------------------------------------
# Reading and validation
# --------------------------------------------------------------------------------------------


def read_json_object(path: Path, error: type[UserError]) -> dict[str, Any]:
    """Parse a JSON file that must hold an object; any problem raises ``error`` naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object")
    return data


def check_format(
    cfg: dict[str, Any], where: str | Path, name: str, max_version: int, error: type[UserError]
) -> int:
    """Check a versioned config's ``format`` and ``format_version`` (1..max_version)."""
    if cfg.get("format") != name:
        raise error(f"{where}: 'format' is {cfg.get('format')!r}, expected {name!r}")
    version = cfg.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= max_version:
        raise error(
            f"{where}: unsupported format_version {version!r} (this code reads 1..{max_version})"
        )
    return version


def _config_path(path: str | os.PathLike[str]) -> Path:
    ckpt = Path(path)
    if not ckpt.exists():
        raise CheckpointError(f"checkpoint directory {ckpt} does not exist")
    if not ckpt.is_dir():
        raise CheckpointError(
            f"checkpoint {ckpt} is not a directory (expected a folder with {CONFIG_FILE})"
        )
    cfg_path = ckpt / CONFIG_FILE
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{cfg_path}: missing; a checkpoint directory needs {CONFIG_FILE}"
            + run_folder_hint(ckpt)
        )
    return cfg_path


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a checkpoint's ``config.json`` (without touching the weights); returns
    the JSON object as stored (see :func:`read_checkpoint_config` for the typed view)."""
    return read_checkpoint_config(path).raw


def read_checkpoint_config(path: str | os.PathLike[str]) -> CheckpointConfig:
    """Read and validate a checkpoint's ``config.json`` into a :class:`CheckpointConfig`."""
    cfg_path = _config_path(path)
    cfg = read_json_object(cfg_path, CheckpointError)
    return CheckpointConfig.from_dict(cfg, str(cfg_path))


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
    """A loaded checkpoint: networks in eval mode plus their typed self-description."""

    path: Path
    config: CheckpointConfig
    generator: nn.Module | None  # None for kind ebm
    discriminator: nn.Module | None  # None for kinds vae and ae
    train_state: Any | None = None
    encoder: nn.Module | None = None  # kinds vae and ae only

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def model_config(self) -> ModelConfig:
        return self.config.model

    @property
    def step(self) -> int:
        return self.config.step

    @property
    def checkpoint_hash(self) -> str:
        return self.config.checkpoint_hash

    @property
    def model_id(self) -> str:
        return self.config.model_id


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: str | torch.device = "cpu",
    with_train_state: bool = False,
    verify_hash: bool = True,
) -> Checkpoint:
    """Load and validate a checkpoint directory; raise :class:`CheckpointError` on any problem."""
    ckpt = Path(path)
    cfg = read_checkpoint_config(ckpt)
    # The kind's networks, and the optional ones its config.json records (a GAN's encoder).
    wanted = weight_files(cfg.kind)
    wanted += tuple(n for n in optional_files(cfg.kind) if n in cfg.file_hashes)
    modules: dict[str, nn.Module] = {}
    for name in wanted:
        if name == GENERATOR_FILE:
            module: nn.Module = build_generator(cfg.model)
        elif name == DISCRIMINATOR_FILE:
            module = build_discriminator(cfg.model)
        elif name in optional_files(cfg.kind):
            module = build_latent_encoder(cfg.model)
        else:
            module = build_encoder(cfg.model, variational=model_kind(cfg.kind).variational)
        load_weights(ckpt / name, module, cfg.file_hashes.get(name), verify_hash)
        modules[name] = module.to(device).eval()
    state = load_train_state(ckpt) if with_train_state else None
    return Checkpoint(
        ckpt,
        cfg,
        modules.get(GENERATOR_FILE),
        modules.get(DISCRIMINATOR_FILE),
        state,
        modules.get(ENCODER_FILE),
    )


def add_encoder(
    path: str | os.PathLike[str], encoder: nn.Module, info: dict[str, Any]
) -> dict[str, Any]:
    """Atomically add (or replace) a GAN checkpoint's optional encoder: the other files stay
    byte for byte (hard links where possible), ``config.json`` records the encoder's SHA-256
    and ``info`` (how it was trained) under ``encoder``; the checkpoint hash and model id stay.
    Returns the new config."""
    ckpt = Path(path)
    cfg = read_checkpoint_config(ckpt)
    if ENCODER_FILE not in optional_files(cfg.kind):
        raise CheckpointError(
            f"{ckpt}: a {cfg.kind} checkpoint takes no added encoder"
            + (" (its encoder is part of the model)" if model_kind(cfg.kind).has_encoder else "")
        )
    raw = dict(cfg.raw)
    try:
        with atomic_directory(ckpt) as tmp:
            for entry in ckpt.iterdir():  # everything else in the folder stays
                if entry.is_file() and entry.name not in (ENCODER_FILE, CONFIG_FILE):
                    _link_or_copy(entry, tmp / entry.name)
            save_file(_state_dict_cpu(encoder), str(tmp / ENCODER_FILE))
            files = dict(_object(raw, "files"))
            files[ENCODER_FILE] = {"sha256": sha256_file(tmp / ENCODER_FILE)}
            raw["files"] = files
            raw["encoder"] = info
            (tmp / CONFIG_FILE).write_text(json.dumps(raw, indent=2) + "\n")
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"cannot add the encoder to {ckpt}: {type(exc).__name__}: {exc} (the checkpoint is "
            "intact)"
        ) from exc
    return raw


def is_checkpoint(path: Path) -> bool:
    """A folder with a config.json and a weight file (any kind)."""
    return (path / CONFIG_FILE).is_file() and any((path / n).is_file() for n in WEIGHT_FILES)
