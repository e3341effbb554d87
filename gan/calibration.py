"""D's scores on held-out real images and the calibration of D's logit.

Both are records in a checkpoint's ``config.json`` (read and validated by
:mod:`gan.checkpoint`): :class:`RealScores` holds the ``real_scores`` quantiles of D's logit on
held-out real images; :class:`Calibration` the ``calibration`` entry, a map from D's logit to
the probability that an image is real (Platt or isotonic), with discriminator rejection
sampling's pilot statistics (:class:`DRSPilot`). A malformed entry raises
:class:`gan.errors.CheckpointError` naming the file.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from gan.errors import CheckpointError


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


@dataclass(frozen=True)
class Refit:
    """How the discriminator was refit (``config.json`` ``refit``, written by ``gan-calibrate
    --refit``): after training, a copy of the source checkpoint's D was trained on for
    ``steps`` Adam steps (learning rate ``lr``, ``batch`` reals and as many fresh samples of
    the frozen G per step) with the logistic loss, whose optimum is the log density ratio that
    DRS and MH read; G (and an encoder) are the source's, byte for byte. ``heldout_bce_before``
    and ``heldout_bce_after`` are the logistic loss (nats, equal priors) of the source's D and
    of the refit D on held-out reals against fresh samples: lower is a better ratio estimate.
    ``raw`` is the whole entry as stored."""

    steps: int
    lr: float
    batch: int
    source_model_id: str
    heldout_bce_before: float
    heldout_bce_after: float
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_config(cls, data: Any, where: str) -> Refit | None:
        """Validate a ``refit`` entry (absent or None: a D as training left it)."""
        if data is None:
            return None

        def bad(problem: str) -> CheckpointError:
            return CheckpointError(f"{where}: 'refit' {problem}")

        if not isinstance(data, dict):
            raise bad(f"must be an object or null, got {type(data).__name__}")
        counts = {}
        for key in ("steps", "batch"):
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"'{key}' must be a positive integer, got {value!r}")
            counts[key] = value
        lr = _number(data.get("lr"))
        if lr is None or lr <= 0:
            raise bad(f"'lr' must be a positive number, got {data.get('lr')!r}")
        losses = {}
        for key in ("heldout_bce_before", "heldout_bce_after"):
            value = _number(data.get(key))
            if value is None or value < 0:
                raise bad(f"'{key}' must be a non-negative number, got {data.get(key)!r}")
            losses[key] = value
        source = data.get("source_model_id")
        if not isinstance(source, str) or not source:
            raise bad(f"'source_model_id' must be the source checkpoint's model id, got {source!r}")
        return cls(
            steps=counts["steps"],
            lr=lr,
            batch=counts["batch"],
            source_model_id=source,
            heldout_bce_before=losses["heldout_bce_before"],
            heldout_bce_after=losses["heldout_bce_after"],
            raw=data,
        )
