"""The sampler registry (no torch): each sampling method declares itself once, in its own file
of this package, with :func:`register`.

A declaration (:class:`Sampler`) says what the method is called, what its options are (types,
bounds, defaults, descriptions, which service setting caps which option), what it needs (a
calibrated D, gradients, which networks, per-image seeds) and where its implementation is: a
step machine (forward passes only) or a gradient function. Which model kinds can run it follows
from the networks it needs and :mod:`gan.kinds`; ``gan-sample``/``gan-eval --method``,
``POST /generate`` and ``GET /info`` all read :data:`METHODS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeAlias

from gan.kinds import Network, model_kind
from gan.samplers.options import MethodError, OptionSpec

if TYPE_CHECKING:
    import torch

    from gan.checkpoint import Calibration
    from gan.samplers.dispatch import Models
    from gan.samplers.results import GuidedResult
    from gan.samplers.steps import Steps

#: A method's typed options: an instance of a registered sampler's frozen ``options_type``.
MethodOptions: TypeAlias = Any

#: ``(models, options, seeds, labels, truncation)`` -> a step machine.
StepsFn = Callable[["Models", Any, Sequence[int], "torch.Tensor | None", "float | None"], "Steps"]
#: ``(models, options, seeds, labels, truncation)`` -> the images, run with gradients enabled.
GradientFn = Callable[
    ["Models", Any, Sequence[int], "torch.Tensor | None", "float | None"], "GuidedResult"
]
BOTH: tuple[Network, ...] = ("generator", "discriminator")


class CalibrationMissing(MethodError):
    """A method needs a calibrated D and the checkpoint has none."""


def calibration_missing(method: str, checkpoint: object | None = None) -> CalibrationMissing:
    where = f"{checkpoint} has" if checkpoint is not None else "this checkpoint has"
    return CalibrationMissing(
        f"method {method!r} needs a calibrated discriminator and {where} no calibration; add one "
        f"with `gan-calibrate --checkpoint {checkpoint or 'DIR'}` (it updates only config.json)"
    )


@dataclass(frozen=True)
class Sampler:
    """One sampling method, declared once next to its implementation."""

    name: str
    label: str
    description: str
    options_type: type[Any]
    options: tuple[OptionSpec, ...] = ()
    #: An example of ``method_options`` (the API docs show it).
    example: Mapping[str, Any] = field(default_factory=dict)
    needs_calibration: bool = False
    needs_gradients: bool = False
    #: The networks it needs; ``networks_for`` may narrow them by the options.
    networks: tuple[Network, ...] = BOTH
    networks_for: Callable[[Any], tuple[Network, ...]] | None = None
    #: What to suggest on a kind that lacks G (e.g. "pixel_ascent with start noise").
    without_generator: str | None = None
    #: Whether it works only on seeded images (its extra draws come from each image's seed).
    needs_seeds: bool = True
    #: The kind's own sampling (``plain``): works on every kind, and is a gradient method where
    #: the kind's plain sampling needs gradients (an ebm's Langevin search).
    kind_plain: bool = False
    #: A check of the options against the checkpoint's calibration (a MethodError naming the
    #: option, or None), where the calibration bounds them.
    calibration_check: Callable[[Any, Calibration], MethodError | None] | None = None
    #: Its implementation: a step machine (forward-only) and/or a gradient function.
    steps: StepsFn | None = None
    gradient: GradientFn | None = None
    #: Position in listings (lower first); registration order breaks ties.
    order: int = 100

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "description": self.description,
            "needs_calibration": self.needs_calibration,
            "needs_gradients": self.needs_gradients,
            "options": [o.describe() for o in self.options],
        }

    def needed_networks(self, options: MethodOptions | None = None) -> tuple[Network, ...]:
        if self.kind_plain:
            return ()
        if self.networks_for is not None:
            return self.networks_for(options)
        return self.networks

    def build(self, values: Mapping[str, Any]) -> MethodOptions:
        """Typed options from values already checked (missing ones take defaults)."""
        return self.options_type(**values)


#: Every registered sampler by name, in listing order (filled by ``gan.samplers``).
METHODS: dict[str, Sampler] = {}


def register(sampler: Sampler) -> Sampler:
    """Add a sampler to :data:`METHODS` (its file calls this once)."""
    if sampler.name in METHODS:
        raise ValueError(f"sampler {sampler.name!r} is registered twice")
    METHODS[sampler.name] = sampler
    return sampler


def sort_registry() -> None:
    """Order :data:`METHODS` by each sampler's ``order`` (stable)."""
    ordered = sorted(METHODS.values(), key=lambda s: s.order)
    METHODS.clear()
    METHODS.update((s.name, s) for s in ordered)


def method_spec(method: str) -> Sampler:
    """The declaration of ``method``; :class:`MethodError` lists the known ones."""
    spec = METHODS.get(method)
    if spec is None:
        raise MethodError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
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
    return spec.build({name: known[name].check(value) for name, value in given.items()})


def options_from_strings(method: str, pairs: Sequence[str]) -> MethodOptions:
    """``["keep=0.9", "max_proposals=16"]`` (the CLI's ``--method-option``) -> typed options."""
    known = {o.name: o for o in method_spec(method).options}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not name:
            raise MethodError(f"--method-option {pair!r}: write NAME=VALUE, e.g. keep=0.9")
        option = known.get(name)
        values[name] = text if option is None else option.from_string(text)  # unknown: named
    return parse_options(method, values)


def options_dict(options: MethodOptions) -> dict[str, Any]:
    """The options as a plain dict (every option, defaults included)."""
    out: dict[str, Any] = asdict(options)
    return out


def method_of(options: MethodOptions) -> str:
    """The method name of a typed options object."""
    for spec in METHODS.values():
        if type(options) is spec.options_type:
            return spec.name
    raise MethodError(f"not a method's options: {options!r}")


def option_names(method: str) -> list[str]:
    return [f.name for f in fields(method_spec(method).options_type)]


def kind_refusal(kind: str, method: str, options: MethodOptions | None = None) -> str | None:
    """Why a checkpoint of ``kind`` cannot run ``method`` (None: it can): the networks the
    method needs (its declaration) against those the kind holds (:mod:`gan.kinds`)."""
    spec = method_spec(method)
    declared = model_kind(kind)
    missing = [n for n in spec.needed_networks(options) if n not in declared.networks]
    if not missing:
        return None
    if "generator" not in missing:
        return (
            f"method {method!r} needs a discriminator, and this checkpoint is a {kind} (a "
            "decoder alone, no D): use method plain"
        )
    needs = " and a ".join(spec.networks)
    plain = (
        "its plain sampling already is the Langevin search on D; "
        if declared.plain_needs_gradients
        else ""
    )
    alternatives = "".join(
        f", or {s.without_generator}" for s in METHODS.values() if s.without_generator
    )
    return (
        f"method {method!r} needs a {needs}, and this checkpoint is {declared.what()}: "
        f"{plain}use method plain{alternatives}"
    )


def check_kind(kind: str, method: str, options: MethodOptions | None = None) -> None:
    """:class:`MethodError` when a checkpoint of ``kind`` cannot run ``method``."""
    reason = kind_refusal(kind, method, options)
    if reason is not None:
        raise MethodError(reason, None)


def runs_gradients(kind: str, method: str) -> bool:
    """Whether ``method`` on a checkpoint of ``kind`` runs backward passes (an ebm's plain
    sampling is its Langevin search)."""
    spec = method_spec(method)
    return spec.needs_gradients or (spec.kind_plain and model_kind(kind).plain_needs_gradients)
