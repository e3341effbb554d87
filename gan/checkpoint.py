"""The one reader and writer of checkpoints (used by training, evaluation and the service).

A checkpoint is a directory::

    config.json                 self-description: format version, model config, normalisation,
                                dataset, step, seed, training options, metrics, D's scores on
                                held-out real images (quantiles), the calibration of D's logit
                                with DRS's pilot statistics (optional), SHA-256 of every weight
                                file
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
``real_scores`` quantiles, the ``calibration`` (:class:`Calibration`), every tensor's name,
shape and finiteness and the file hashes. A
loaded :class:`Checkpoint` carries a typed :class:`CheckpointConfig`; nobody else parses
``config.json``.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import itertools
import json
import math
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

from gan.dataset_info import portable_dataset_info
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
)
from gan.samplers import EBMSearch, MethodError

FORMAT_NAME = "gan-checkpoint"
#: The newest version this code writes and reads: 1 for GANs (unchanged since version 1), 2 for
#: the other kinds.
FORMAT_VERSION = 2
GAN_FORMAT_VERSION = 1  # what kind gan writes (gan.kinds declares each kind's version)
CONFIG_FILE = "config.json"
GENERATOR_FILE = "generator.safetensors"
DISCRIMINATOR_FILE = "discriminator.safetensors"
ENCODER_FILE = "encoder.safetensors"
TRAIN_STATE_TENSORS = "train_state.safetensors"
TRAIN_STATE_JSON = "train_state.json"
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


class CheckpointError(UserError):
    """A checkpoint is missing, malformed or does not match its own description."""


def _state_dict_cpu(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


# --------------------------------------------------------------------------------------------
# The typed config
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealScores:
    """D's logits on held-out real images, as quantiles (``config.json`` ``real_scores``)."""

    levels: tuple[float, ...]  # ascending, 0.0 .. 1.0
    quantiles: tuple[float, ...]  # logit at each level, non-decreasing
    num_images: int | None
    source: str | None

    @classmethod
    def from_config(cls, data: Any, where: str) -> RealScores | None:
        """Validate a ``real_scores`` entry (None stays None); ``where`` names the file."""
        if data is None:
            return None

        def bad(problem: str) -> CheckpointError:
            return CheckpointError(f"{where}: 'real_scores' {problem}")

        if not isinstance(data, dict):
            raise bad(f"must be an object or null, got {type(data).__name__}")
        levels, quantiles = data.get("levels"), data.get("quantiles")
        if not isinstance(levels, list) or not isinstance(quantiles, list):
            raise bad("needs the lists 'levels' and 'quantiles'")
        if len(levels) != len(quantiles) or len(levels) < 2:
            raise bad(
                f"'levels' ({len(levels)}) and 'quantiles' ({len(quantiles)}) must have the same "
                "length, at least 2"
            )
        for name, values in (("levels", levels), ("quantiles", quantiles)):
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise bad(f"'{name}' must hold finite numbers, found {v!r}")
        if any(b <= a for a, b in itertools.pairwise(levels)):
            raise bad("'levels' must be strictly increasing")
        if levels[0] != 0.0 or levels[-1] != 1.0:
            raise bad(f"'levels' must run from 0.0 to 1.0, got {levels[0]} .. {levels[-1]}")
        if any(b < a for a, b in itertools.pairwise(quantiles)):
            raise bad("'quantiles' must be non-decreasing (one logit per level, ascending)")
        num = data.get("num_images")
        if num is not None and (isinstance(num, bool) or not isinstance(num, int) or num < 1):
            raise bad(f"'num_images' must be a positive integer, got {num!r}")
        source = data.get("source")
        return cls(
            tuple(float(v) for v in levels),
            tuple(float(v) for v in quantiles),
            num,
            None if source is None else str(source),
        )

    def percentile(self, logit: float) -> float:
        """Share (0..100) of the held-out real images whose logit is lower than ``logit``.

        The empirical distribution is read off the stored quantiles: below the lowest one the
        share is 0, above the highest 100, and in between it is interpolated linearly between
        the two surrounding quantiles (at a run of equal quantiles it jumps across the run).
        """
        q = self.quantiles
        k = bisect.bisect_left(q, logit)  # quantiles strictly below the logit: q[:k]
        if k == 0:
            return 0.0
        if k == len(q):
            return 100.0
        lo, hi = q[k - 1], q[k]  # lo < logit <= hi, lo < hi
        frac = (logit - lo) / (hi - lo)
        level = self.levels[k - 1] + frac * (self.levels[k] - self.levels[k - 1])
        return 100.0 * level


CALIBRATION_KINDS = ("platt", "isotonic")
#: Probabilities are clipped to [PROB_CLIP, 1 - PROB_CLIP] before taking their logit.
PROB_CLIP = 1e-6


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def _number(value: Any) -> float | None:
    """``value`` as a float when it is a finite JSON number, else None."""
    return float(value) if _finite(value) else None


def _interp(x: float, xs: tuple[float, ...], ys: tuple[float, ...]) -> float:
    """Piecewise-linear interpolation of ``ys`` over ascending ``xs``, constant beyond the ends."""
    if x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    k = bisect.bisect_right(xs, x)  # xs[k - 1] <= x < xs[k]
    lo, hi = xs[k - 1], xs[k]
    frac = 0.0 if hi == lo else (x - lo) / (hi - lo)
    return ys[k - 1] + frac * (ys[k] - ys[k - 1])


@dataclass(frozen=True)
class DRSPilot:
    """Discriminator rejection sampling's statistics over a pilot set of G's samples.

    ``d_max`` is the largest calibrated logit seen; ``gammas[i]`` is the ``keep_levels[i]``
    quantile of the acceptance score ``F`` (with gamma 0) over the pilot set, and
    ``acceptance[i]`` the mean acceptance probability ``sigmoid(F - gammas[i])`` there: the
    share of proposals accepted at that level.
    """

    d_max: float
    eps: float
    keep_levels: tuple[float, ...]  # ascending, in [0, 1)
    gammas: tuple[float, ...]  # non-decreasing
    acceptance: tuple[float, ...]  # in (0, 1]
    num_images: int

    @classmethod
    def from_config(cls, data: Any, where: str) -> DRSPilot:
        def bad(problem: str) -> CheckpointError:
            return CheckpointError(f"{where}: 'calibration.drs' {problem}")

        if not isinstance(data, dict):
            raise bad("must be an object")
        for key in ("d_max", "eps"):
            if not _finite(data.get(key)):
                raise bad(f"needs a finite number '{key}', got {data.get(key)!r}")
        lists = {k: data.get(k) for k in ("keep_levels", "gammas", "acceptance")}
        for key, values in lists.items():
            if not isinstance(values, list) or not values or not all(map(_finite, values)):
                raise bad(f"'{key}' must be a non-empty list of finite numbers")
        levels, gammas, acceptance = lists["keep_levels"], lists["gammas"], lists["acceptance"]
        assert levels is not None and gammas is not None and acceptance is not None
        if not len(levels) == len(gammas) == len(acceptance):
            raise bad("'keep_levels', 'gammas' and 'acceptance' must have the same length")
        if (
            any(b <= a for a, b in itertools.pairwise(levels))
            or not 0 <= levels[0] < 1
            or (levels[-1] >= 1)
        ):
            raise bad("'keep_levels' must rise strictly within [0, 1)")
        if any(b < a for a, b in itertools.pairwise(gammas)):
            raise bad("'gammas' must be non-decreasing")
        if not all(0 < a <= 1 for a in acceptance):
            raise bad("'acceptance' values must lie in (0, 1]")
        if not 0 < data["eps"] < 1:
            raise bad(f"'eps' must lie in (0, 1), got {data['eps']!r}")
        num = data.get("num_images")
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise bad(f"'num_images' must be a positive integer, got {num!r}")
        return cls(
            float(data["d_max"]),
            float(data["eps"]),
            tuple(map(float, levels)),
            tuple(map(float, gammas)),
            tuple(map(float, acceptance)),
            num,
        )

    def _check_keep(self, keep: float) -> None:
        lo, hi = self.keep_levels[0], self.keep_levels[-1]
        if not lo <= keep <= hi:
            raise CheckpointError(
                f"keep {keep:g} is outside the levels this calibration measured ({lo:g}..{hi:g}); "
                "refit it with gan-calibrate"
            )

    def gamma(self, keep: float) -> float:
        """gamma at percentile level ``keep`` (interpolated between the stored levels)."""
        self._check_keep(keep)
        return _interp(keep, self.keep_levels, self.gammas)

    def expected_acceptance(self, keep: float) -> float:
        """The share of proposals the pilot set predicts DRS accepts at level ``keep``."""
        self._check_keep(keep)
        return _interp(keep, self.keep_levels, self.acceptance)

    def to_config(self) -> dict[str, Any]:
        return {
            "d_max": self.d_max,
            "eps": self.eps,
            "keep_levels": list(self.keep_levels),
            "gammas": list(self.gammas),
            "acceptance": list(self.acceptance),
            "num_images": self.num_images,
        }


@dataclass(frozen=True)
class Calibration:
    """A calibration of D's logit (``config.json`` ``calibration``), fitted by ``gan-calibrate``
    or at export on held-out real images against fresh samples of this G.

    ``probability(logit)`` estimates the probability that an image came from the training data
    rather than from this G (equal priors), for this checkpoint's G and D only. ``kind`` is
    ``platt`` (``sigmoid(a * logit + b)``) or ``isotonic`` (a non-decreasing map, linear between
    the stored points). ``ece`` is its expected calibration error on images it was not fitted
    on, ``ece_uncalibrated`` that of ``sigmoid(logit)`` on the same images. ``raw`` is the
    whole entry as stored (it has more records for people: candidates, sources, time).
    """

    kind: str
    a: float
    b: float
    isotonic_logits: tuple[float, ...]  # ascending (isotonic only; else empty)
    isotonic_probabilities: tuple[float, ...]  # non-decreasing, in [0, 1]
    ece: float
    ece_uncalibrated: float | None
    num_real: int
    num_fake: int
    real_source: str | None
    drs: DRSPilot
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_config(cls, data: Any, where: str) -> Calibration | None:
        """Validate a ``calibration`` entry (None stays None); ``where`` names the file."""
        if data is None:
            return None

        def bad(problem: str) -> CheckpointError:
            return CheckpointError(
                f"{where}: 'calibration' {problem}; refit it with gan-calibrate --checkpoint DIR"
            )

        if not isinstance(data, dict):
            raise bad(f"must be an object or null, got {type(data).__name__}")
        kind = data.get("kind")
        if kind not in CALIBRATION_KINDS:
            raise bad(f"'kind' must be one of {', '.join(CALIBRATION_KINDS)}, got {kind!r}")
        platt = data.get("platt")
        if (
            not isinstance(platt, dict)
            or not _finite(platt.get("a"))
            or not _finite(platt.get("b"))
        ):
            raise bad("needs 'platt' with finite numbers 'a' and 'b'")
        xs: tuple[float, ...] = ()
        ys: tuple[float, ...] = ()
        if kind == "isotonic":
            iso = data.get("isotonic")
            if not isinstance(iso, dict):
                raise bad("of kind 'isotonic' needs 'isotonic' with 'logits' and 'probabilities'")
            lx, ly = iso.get("logits"), iso.get("probabilities")
            if not isinstance(lx, list) or not isinstance(ly, list):
                raise bad("'isotonic' needs the lists 'logits' and 'probabilities'")
            if len(lx) != len(ly) or len(lx) < 2 or not all(map(_finite, lx + ly)):
                raise bad("'isotonic' needs equally long lists (>= 2) of finite numbers")
            if any(q <= p for p, q in itertools.pairwise(lx)):
                raise bad("'isotonic.logits' must rise strictly")
            if any(q < p for p, q in itertools.pairwise(ly)) or not all(0 <= p <= 1 for p in ly):
                raise bad("'isotonic.probabilities' must be non-decreasing within [0, 1]")
            xs, ys = tuple(map(float, lx)), tuple(map(float, ly))
        ece = _number(data.get("ece"))
        if ece is None or not 0 <= ece <= 1:
            raise bad(f"'ece' must be a number in [0, 1], got {data.get('ece')!r}")
        ece_raw = _number(data.get("ece_uncalibrated"))
        if data.get("ece_uncalibrated") is not None and (ece_raw is None or not 0 <= ece_raw <= 1):
            raise bad(
                "'ece_uncalibrated' must be a number in [0, 1] or null, got "
                f"{data.get('ece_uncalibrated')!r}"
            )
        counts = {}
        for key in ("num_real", "num_fake"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"'{key}' must be a positive integer, got {value!r}")
            counts[key] = value
        source = data.get("real_source")
        return cls(
            kind=kind,
            a=float(platt["a"]),
            b=float(platt["b"]),
            isotonic_logits=xs,
            isotonic_probabilities=ys,
            ece=ece,
            ece_uncalibrated=ece_raw,
            num_real=counts["num_real"],
            num_fake=counts["num_fake"],
            real_source=None if source is None else str(source),
            drs=DRSPilot.from_config(data.get("drs"), where),
            raw=data,
        )

    def probability(self, logit: float) -> float:
        """Calibrated probability that an image with D's ``logit`` is real (not from this G)."""
        if self.kind == "isotonic":
            return _interp(float(logit), self.isotonic_logits, self.isotonic_probabilities)
        z = self.a * float(logit) + self.b
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    def calibrated_logit(self, logit: float) -> float:
        """``log(p / (1 - p))`` of :meth:`probability` (p clipped to 1e-6 .. 1 - 1e-6 for
        isotonic): the calibrated log density ratio of data over G at the image."""
        if self.kind == "platt":
            return self.a * float(logit) + self.b
        p = min(max(self.probability(logit), PROB_CLIP), 1.0 - PROB_CLIP)
        return math.log(p / (1.0 - p))

    def calibrated_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """:meth:`calibrated_logit` of every entry, float64 (CPU)."""
        x = logits.detach().to("cpu", torch.float64)
        if self.kind == "platt":
            return self.a * x + self.b
        return torch.tensor([self.calibrated_logit(v) for v in x.tolist()], dtype=torch.float64)

    def summary(self) -> dict[str, Any]:
        """What ``GET /info`` shows: kind, errors, sizes and sources (not the fitted table)."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "ece": self.ece,
            "ece_uncalibrated": self.ece_uncalibrated,
            "num_real": self.num_real,
            "num_fake": self.num_fake,
            "real_source": self.real_source,
            "drs_pilot_images": self.drs.num_images,
        }
        if self.kind == "platt":
            out["platt"] = {"a": self.a, "b": self.b}
        for key in ("fitted_at", "validation"):
            if isinstance(self.raw.get(key), str):
                out[key] = self.raw[key]
        return out


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
    for name, module in given.items():
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
            files = {name: {"sha256": sha256_file(tmp / name)} for name in wanted}
            if train_state is not None:
                save_file(tensors, str(tmp / TRAIN_STATE_TENSORS))
                (tmp / TRAIN_STATE_JSON).write_text(json.dumps(tree))
            cfg = dict(config)
            cfg["files"] = files
            cfg["checkpoint_hash"] = checkpoint_hash_from_files(files)
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


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link where the filesystem allows (no second copy of the bytes; files are only
    ever replaced by a rename, never rewritten in place, so linked copies cannot diverge),
    else a byte copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def checkpoint_hash_from_files(files: dict[str, dict[str, str]]) -> str:
    """Hash of the weight files' hashes (those present, in WEIGHT_FILES order; a GAN's is the
    same as version 1 computed)."""
    h = hashlib.sha256()
    for name in (n for n in WEIGHT_FILES if n in files):
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
        raise CheckpointError(f"{cfg_path}: missing; a checkpoint directory needs {CONFIG_FILE}")
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
    wanted = weight_files(cfg.kind)
    modules: dict[str, nn.Module] = {}
    for name in wanted:
        if name == GENERATOR_FILE:
            module: nn.Module = build_generator(cfg.model)
        elif name == DISCRIMINATOR_FILE:
            module = build_discriminator(cfg.model)
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
    """A folder with a config.json and a weight file (any kind)."""
    return (path / CONFIG_FILE).is_file() and any((path / n).is_file() for n in WEIGHT_FILES)
