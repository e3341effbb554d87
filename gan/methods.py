"""Sampling methods and their options: names, defaults, bounds and validation (no torch).

The algorithms live in :mod:`gan.guided`; this module only says what each method is called,
which options it takes and what values they may have, so that the service can describe and
validate a request without importing torch. ``gan-sample --method``, ``gan-eval --method``,
``POST /generate`` and ``GET /info`` all read the same :data:`METHODS`.

* ``plain``: G alone, today's behaviour.
* ``drs``: discriminator rejection sampling (Azadi et al. 2018); needs a calibrated D.
* ``mh``: Metropolis-Hastings independence sampler over K proposals (Turner et al. 2019);
  needs a calibrated D.
* ``langevin``: Langevin dynamics in latent space on ``E(z) = |z|^2/2 - d(G(z))``
  (Che et al. 2020); needs gradients.
* ``pixel_ascent``: gradient ascent on D's logit over the pixels, the literal
  ``argmax_x D(x)``; needs gradients. It finds patterns D scores highly, not digits: the honest
  demonstration of why G is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from gan.errors import UserError

OptionType = Literal["integer", "number", "string"]


class MethodError(UserError, ValueError):
    """An unknown method or a bad method option; ``option`` names the option at fault."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class OptionSpec:
    """One option of a method: its type, default and bounds (inclusive unless ``exclusive``)."""

    name: str
    type: OptionType
    default: int | float | str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    #: The service setting that caps this option per request (GAN_MAX_PROPOSALS, ...), if any.
    cap: str | None = None

    def check(self, value: Any) -> int | float | str:
        """``value`` converted to the option's type; :class:`MethodError` if it does not fit."""
        name = self.name
        if self.type == "string":
            if not isinstance(value, str) or value not in self.choices:
                raise MethodError(
                    f"{name} must be one of {', '.join(self.choices)}; got {value!r}", name
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MethodError(f"{name} must be a number, got {value!r}", name)
        if self.type == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise MethodError(f"{name} must be a whole number, got {value!r}", name)
            value = int(value)
        elif not math.isfinite(value):
            raise MethodError(f"{name} must be a finite number, got {value!r}", name)
        else:
            value = float(value)
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.exclusive_minimum else value < low):
            relation = "above" if self.exclusive_minimum else "at least"
            raise MethodError(f"{name} must be {relation} {low:g}, got {value!r}", name)
        if high is not None and value > high:
            raise MethodError(f"{name} must be at most {high:g}, got {value!r}", name)
        return value

    def describe(self) -> dict[str, Any]:
        """For ``GET /info``: the JSON-schema-like description the web page reads."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
        }
        if self.minimum is not None:
            out["minimum"] = self.minimum
            if self.exclusive_minimum:
                out["exclusive_minimum"] = True
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["enum"] = list(self.choices)
        if self.cap is not None:
            out["cap_setting"] = self.cap
        return out


# --------------------------------------------------------------------------------------------
# The options of each method (frozen dataclasses: the validated, typed form)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlainOptions:
    """``plain`` takes no options."""


@dataclass(frozen=True)
class DRSOptions:
    keep: float = 0.8
    max_proposals: int = 32


@dataclass(frozen=True)
class MHOptions:
    proposals: int = 8


@dataclass(frozen=True)
class LangevinOptions:
    steps: int = 20
    step_size: float = 0.01
    noise: float = 1.0


@dataclass(frozen=True)
class PixelAscentOptions:
    steps: int = 50
    step_size: float = 0.02
    start: str = "noise"


MethodOptions = PlainOptions | DRSOptions | MHOptions | LangevinOptions | PixelAscentOptions


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    description: str
    needs_calibration: bool
    needs_gradients: bool
    options_type: type[Any]
    options: tuple[OptionSpec, ...]

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "needs_calibration": self.needs_calibration,
            "needs_gradients": self.needs_gradients,
            "options": [o.describe() for o in self.options],
        }


PROPOSAL_CAP = "GAN_MAX_PROPOSALS"
LANGEVIN_CAP = "GAN_MAX_LANGEVIN_STEPS"
ASCENT_CAP = "GAN_MAX_ASCENT_STEPS"

#: Hard bounds (the service's caps, e.g. GAN_MAX_PROPOSALS, are usually lower).
MAX_PROPOSALS_BOUND = 10_000
MAX_STEPS_BOUND = 10_000

METHODS: dict[str, MethodSpec] = {
    "plain": MethodSpec(
        "plain",
        "plain",
        "Plain sampling: G draws each image from its seed's latent; D is not consulted. The "
        "default.",
        needs_calibration=False,
        needs_gradients=False,
        options_type=PlainOptions,
        options=(),
    ),
    "drs": MethodSpec(
        "drs",
        "DRS",
        "Discriminator rejection sampling: G proposes images (the first is the plain one) and "
        "each is accepted with a probability from D's calibrated logit; forward passes only. "
        "Cheap: the default choice for better images.",
        needs_calibration=True,
        needs_gradients=False,
        options_type=DRSOptions,
        options=(
            OptionSpec(
                "keep",
                "number",
                DRSOptions.keep,
                "Percentile level (0..0.99) of the acceptance score over the pilot set that "
                "sets gamma: higher is stricter (fewer proposals accepted, more tried).",
                minimum=0.0,
                maximum=0.99,
            ),
            OptionSpec(
                "max_proposals",
                "integer",
                DRSOptions.max_proposals,
                "Proposals tried per image at most; if none is accepted, the best-scoring one "
                "is returned.",
                minimum=1,
                maximum=MAX_PROPOSALS_BOUND,
                cap=PROPOSAL_CAP,
            ),
        ),
    ),
    "mh": MethodSpec(
        "mh",
        "MH",
        "Metropolis-Hastings: a chain over K proposals of G per image, started at the plain "
        "image and moved by D's calibrated density ratio; forward passes only.",
        needs_calibration=True,
        needs_gradients=False,
        options_type=MHOptions,
        options=(
            OptionSpec(
                "proposals",
                "integer",
                MHOptions.proposals,
                "K: images G proposes per output (the first is the plain one); cost is K times "
                "plain.",
                minimum=1,
                maximum=MAX_PROPOSALS_BOUND,
                cap=PROPOSAL_CAP,
            ),
        ),
    ),
    "langevin": MethodSpec(
        "langevin",
        "Langevin",
        "Latent Langevin dynamics: moves each image's latent downhill on |z|^2/2 - D(G(z)) "
        "with noise, then draws G(z); a backward pass through G and D per step.",
        needs_calibration=False,
        needs_gradients=True,
        options_type=LangevinOptions,
        options=(
            OptionSpec(
                "steps",
                "integer",
                LangevinOptions.steps,
                "Langevin steps per image.",
                minimum=1,
                maximum=MAX_STEPS_BOUND,
                cap=LANGEVIN_CAP,
            ),
            OptionSpec(
                "step_size",
                "number",
                LangevinOptions.step_size,
                "epsilon: z <- z - epsilon/2 * grad E(z) + sqrt(epsilon) * noise * N(0, I).",
                minimum=0.0,
                maximum=1.0,
                exclusive_minimum=True,
            ),
            OptionSpec(
                "noise",
                "number",
                LangevinOptions.noise,
                "Scale of the injected noise: 1 is Langevin dynamics, 0 plain gradient descent.",
                minimum=0.0,
                maximum=2.0,
            ),
        ),
    ),
    "pixel_ascent": MethodSpec(
        "pixel_ascent",
        "pixel ascent",
        "Gradient ascent on D's logit over the pixels themselves, without G: the literal "
        "argmax_x D(x). It finds patterns that D scores highly, not digits: why G is needed.",
        needs_calibration=False,
        needs_gradients=True,
        options_type=PixelAscentOptions,
        options=(
            OptionSpec(
                "steps",
                "integer",
                PixelAscentOptions.steps,
                "Ascent steps per image.",
                minimum=1,
                maximum=MAX_STEPS_BOUND,
                cap=ASCENT_CAP,
            ),
            OptionSpec(
                "step_size",
                "number",
                PixelAscentOptions.step_size,
                "Root-mean-square change of a pixel per step, in model units (the pixel range "
                "[-1, 1] has width 2).",
                minimum=0.0,
                maximum=1.0,
                exclusive_minimum=True,
            ),
            OptionSpec(
                "start",
                "string",
                PixelAscentOptions.start,
                "noise: uniform random pixels; sample: the plain image G makes from the seed.",
                choices=("noise", "sample"),
            ),
        ),
    ),
}

METHOD_NAMES: tuple[str, ...] = tuple(METHODS)


def method_spec(method: str) -> MethodSpec:
    """The spec of ``method``; :class:`MethodError` lists the known ones."""
    spec = METHODS.get(method)
    if spec is None:
        raise MethodError(f"unknown method {method!r}; use one of {', '.join(METHOD_NAMES)}")
    return spec


def parse_options(method: str, values: Mapping[str, Any] | None = None) -> MethodOptions:
    """Typed, validated options of ``method`` from a mapping (missing ones take defaults)."""
    spec = method_spec(method)
    given = dict(values or {})
    known = {o.name: o for o in spec.options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        takes = f"takes {', '.join(known)}" if known else "takes no options"
        raise MethodError(f"method {method!r} {takes}; unknown: {', '.join(unknown)}", unknown[0])
    checked = {name: known[name].check(value) for name, value in given.items()}
    options: MethodOptions = spec.options_type(**checked)
    return options


def options_from_strings(method: str, pairs: Sequence[str]) -> MethodOptions:
    """``["keep=0.9", "max_proposals=16"]`` (the CLI's ``--method-option``) -> typed options."""
    spec = method_spec(method)
    known = {o.name: o for o in spec.options}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise MethodError(f"--method-option {pair!r}: write NAME=VALUE, e.g. keep=0.9")
        option = known.get(name)
        if option is None:
            values[name] = text  # parse_options names it as unknown
            continue
        if option.type == "string":
            values[name] = text.strip()
            continue
        try:
            values[name] = int(text) if option.type == "integer" else float(text)
        except ValueError:
            kind = "a whole number" if option.type == "integer" else "a number"
            raise MethodError(f"{name} must be {kind}, got {text!r}", name) from None
    return parse_options(method, values)


def options_dict(options: MethodOptions) -> dict[str, Any]:
    """The options as a plain dict (every option, defaults included)."""
    return asdict(options)


def method_of(options: MethodOptions) -> str:
    """The method name of a typed options object."""
    for spec in METHODS.values():
        if type(options) is spec.options_type:
            return spec.name
    raise MethodError(f"not a method's options: {options!r}")


# --------------------------------------------------------------------------------------------
# Model kinds (gan, vae, ae, ebm; gan/models.py MODEL_KINDS): which methods each can run
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EBMSearch:
    """How an ``ebm`` checkpoint makes an image (``config.json`` ``ebm``): ``steps`` Langevin
    steps on D's logit over the pixels from uniform noise in [-1, 1],

        x <- clip(x + step_size * clip(grad_x D(x), -grad_clip, grad_clip) + noise * N(0, I), -1, 1)

    (Du and Mordatch 2019; their step size 10 with gradients clipped to 0.01 moves a pixel by at
    most 0.1 per step). Written by the trainer from its options; fixed per checkpoint."""

    steps: int = 60
    step_size: float = 10.0
    grad_clip: float = 0.01
    noise: float = 0.005

    @classmethod
    def from_config(cls, data: Any) -> EBMSearch:
        """Validate a stored ``ebm`` entry; :class:`MethodError` says what is wrong."""
        if not isinstance(data, dict):
            raise MethodError(
                f"'ebm' must be an object with {', '.join(f.name for f in fields(cls))}"
            )
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise MethodError(f"'ebm' has unknown keys {unknown}")
        steps = data.get("steps", cls.steps)
        if (
            isinstance(steps, bool)
            or not isinstance(steps, int)
            or not 1 <= steps <= MAX_STEPS_BOUND
        ):
            raise MethodError(
                f"'ebm.steps' must be an integer in 1..{MAX_STEPS_BOUND}, got {steps!r}"
            )
        values: dict[str, float] = {}
        for name in ("step_size", "grad_clip", "noise"):
            v = data.get(name, getattr(cls, name))
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not math.isfinite(v)
                or (v < 0 or (v == 0 and name != "noise"))
            ):
                raise MethodError(f"'ebm.{name}' must be a finite number above 0, got {v!r}")
            values[name] = float(v)
        return cls(steps, values["step_size"], values["grad_clip"], values["noise"])

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


def kind_refusal(kind: str, method: str, options: MethodOptions | None = None) -> str | None:
    """Why a checkpoint of ``kind`` cannot run ``method`` (None: it can). ``plain`` works on
    every kind; the D-guided methods need both networks, except ``pixel_ascent`` from noise,
    which needs D only."""
    method_spec(method)
    if method == "plain" or kind == "gan":
        return None
    if kind in ("vae", "ae"):
        return (
            f"method {method!r} needs a discriminator, and this checkpoint is a {kind} (a "
            "decoder alone, no D): use method plain"
        )
    if method == "pixel_ascent" and getattr(options, "start", "noise") == "noise":
        return None
    return (
        f"method {method!r} needs a generator and a discriminator, and this checkpoint is an "
        "ebm (D alone): its plain sampling already is the Langevin search on D; use method "
        "plain, or pixel_ascent with start noise"
    )


def check_kind(kind: str, method: str, options: MethodOptions | None = None) -> None:
    """:class:`MethodError` when a checkpoint of ``kind`` cannot run ``method``."""
    reason = kind_refusal(kind, method, options)
    if reason is not None:
        raise MethodError(reason, None)


def runs_gradients(kind: str, method: str) -> bool:
    """Whether ``method`` on a checkpoint of ``kind`` runs backward passes (an ebm's plain
    sampling is its Langevin search)."""
    return method_spec(method).needs_gradients or (kind == "ebm" and method == "plain")


def option_names(method: str) -> list[str]:
    return [f.name for f in fields(method_spec(method).options_type)]
