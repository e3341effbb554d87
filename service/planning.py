"""Planning of a ``POST /generate`` request: which images (seeds, explicit latents or an
interpolation path), their format and classes, and the sampling method with its options checked
against the model kind, the calibration and the server's cost caps.

Everything here is a pure function of the request and plain values (:class:`Caps`, built once
from the settings; the model's kind, z_dim, classes and calibration), so it runs without the
engine; a problem is a :class:`~fastapi.exceptions.RequestValidationError` naming the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from gan.kinds import model_kind
from gan.latents import image_seeds, interpolation_weights, random_seed
from gan.samplers import METHODS, EBMSearch, MethodOptions, kind_refusal, method_of
from gan.samplers.ebm import EBM_STEPS_CAP
from gan.samplers.options import setting_env
from service.schemas import (
    ANIMATED_FORMATS,
    FORMAT_NAMES,
    METHOD_OPTION_MODELS,
    GenerateRequest,
)

if TYPE_CHECKING:
    from gan.checkpoint import Calibration
    from service.settings import Settings


def field_error(
    loc: list[str | int], msg: str, kind: str = "value_error"
) -> RequestValidationError:
    """A 422 in FastAPI's own format, naming the field at fault."""
    return RequestValidationError([{"loc": ["body", *loc], "msg": msg, "type": kind}])


def cap_settings() -> tuple[str, ...]:
    """The settings (fields of Settings) that cap a method's cost, as the samplers name them."""
    named = [o.cap for spec in METHODS.values() for o in spec.options if o.cap is not None]
    return tuple(dict.fromkeys([*named, EBM_STEPS_CAP]))


@dataclass(frozen=True)
class Caps:
    """The server's limits on one request: images, and each cost cap by its setting's name."""

    max_images: int
    costs: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: Settings) -> Caps:
        return cls(settings.max_images, {name: getattr(settings, name) for name in cap_settings()})

    def cost(self, setting: str) -> int:
        return self.costs[setting]


@dataclass
class Plan:
    """A validated request: which latents to make and how to report them."""

    count: int
    format: str  # a name of OUTPUT_FORMATS (resolved when the request left it out)
    request_seed: int | None
    seeds: list[int | None]
    truncation: float | None
    weights: list[float] | None  # interpolation positions
    z: list[list[float]] | None


def _resolve_format(req: GenerateRequest, count: int) -> str:
    if req.format is None:
        return "png" if count == 1 else "grid"
    if req.format in ANIMATED_FORMATS and req.interpolate is None:
        raise field_error(
            ["format"],
            f"format {req.format!r} animates an interpolation path and is valid only with "
            "interpolate: add interpolate {from_seed, to_seed, steps}, or use format "
            f"{_either(n for n in FORMAT_NAMES if n not in ANIMATED_FORMATS)}",
        )
    if req.format == "png" and count != 1:
        raise field_error(
            ["format"],
            f"format 'png' returns exactly one image but this request makes {count}; use n=1, "
            "or format 'grid' (one PNG of all images) or 'json' (one PNG per image)",
        )
    return req.format


def plan_request(req: GenerateRequest, *, z_dim: int, max_images: int) -> Plan:
    """Check the combinations the schema cannot (limits depend on settings and the model)."""
    limit = f"at most {max_images} images per request (GAN_MAX_IMAGES)"
    if req.interpolate is not None:
        given = [name for name in ("n", "seed", "z") if name in req.model_fields_set]
        if given:
            raise field_error(
                ["interpolate"],
                f"interpolate defines the images itself; remove {', '.join(given)}",
            )
        spec = req.interpolate
        for end in ("from", "to"):
            seed, z = getattr(spec, f"{end}_seed"), getattr(spec, f"{end}_z")
            if seed is None and z is None:
                raise field_error(
                    ["interpolate", f"{end}_seed"],
                    f"Field required: give {end}_seed, or {end}_z (a latent of z_dim = {z_dim} "
                    "numbers)",
                    "missing",
                )
            if seed is not None and z is not None:
                raise field_error(
                    ["interpolate", f"{end}_z"],
                    f"give either {end}_seed or {end}_z, not both",
                )
            if z is not None and len(z) != z_dim:
                raise field_error(
                    ["interpolate", f"{end}_z"],
                    f"{end}_z has {len(z)} numbers; this model's latents have z_dim = {z_dim} "
                    "(see GET /info)",
                )
        if req.truncation is not None and spec.from_z is not None and spec.to_z is not None:
            raise field_error(
                ["truncation"],
                "truncation applies to latents drawn from seeds; from_z and to_z are used as "
                "given (clip them yourself)",
            )
        if "frame_ms" in spec.model_fields_set and req.format not in ANIMATED_FORMATS:
            raise field_error(
                ["interpolate", "frame_ms"],
                f"frame_ms is the frame duration of an animation: add format "
                f"{_either(ANIMATED_FORMATS)}, or drop frame_ms",
            )
        steps = spec.steps
        if steps > max_images:
            raise field_error(
                ["interpolate", "steps"], f"steps is {steps}, {limit}", "too_many_images"
            )
        fmt = _resolve_format(req, steps)
        return Plan(
            steps, fmt, None, [None] * steps, req.truncation, interpolation_weights(steps), None
        )
    if req.z is not None:
        if req.seed is not None:
            raise field_error(["seed"], "give either seed or z, not both (z fixes the images)")
        if req.truncation is not None:
            raise field_error(
                ["truncation"],
                "truncation applies to latents drawn from seeds; explicit z is used as given "
                "(clip it yourself)",
            )
        rows = len(req.z)
        if rows == 0:
            raise field_error(["z"], f"z is empty; give n rows of {z_dim} numbers")
        if rows > max_images:
            raise field_error(["z"], f"z has {rows} rows, {limit}", "too_many_images")
        if "n" in req.model_fields_set and req.n != rows:
            raise field_error(
                ["n"], f"n is {req.n} but z has {rows} rows; drop n or make them agree"
            )
        for i, row in enumerate(req.z):
            if len(row) != z_dim:
                raise field_error(
                    ["z", i],
                    f"z[{i}] has {len(row)} numbers; this model's latents have z_dim = {z_dim} "
                    "(see GET /info)",
                )
        fmt = _resolve_format(req, rows)
        return Plan(rows, fmt, None, [None] * rows, None, None, req.z)
    if req.n > max_images:
        raise field_error(["n"], f"n is {req.n}, {limit}", "too_many_images")
    fmt = _resolve_format(req, req.n)
    seed = req.seed if req.seed is not None else random_seed()
    return Plan(req.n, fmt, seed, list(image_seeds(seed, req.n)), req.truncation, None, None)


def plan_labels(req: GenerateRequest, plan: Plan, classes: tuple[str, ...]) -> list[int] | None:
    """Each image's class for a conditional model (None for an unconditional one); 422 for a
    label an unconditional model cannot take, an unknown class, or a list of the wrong length."""
    from gan.sampling import LabelError, class_labels, resolve_label

    ends = path_classes(req, classes)
    if not classes:
        if req.label is not None:
            raise field_error(
                ["label"], "this model is unconditional (GET /info lists no classes): drop label"
            )
        return None
    if ends is not None and plan.weights is not None:  # the nearer end's class
        return [ends[0] if t < 0.5 else ends[1] for t in plan.weights]
    try:
        if isinstance(req.label, list):
            if len(req.label) != plan.count:
                raise field_error(
                    ["label"],
                    f"label has {len(req.label)} entries for {plan.count} images; give one label "
                    "for all, or one per image",
                )
            return [resolve_label(v, classes) for v in req.label]
        if req.label is not None:
            return [resolve_label(req.label, classes)] * plan.count
    except LabelError as exc:
        raise field_error(["label"], str(exc)) from exc
    if plan.z is not None:
        raise field_error(
            ["label"],
            f"this model is class-conditional and z carries no seed: give label (one of "
            f"{len(classes)} classes, see GET /info)",
        )
    seeds = [s for s in plan.seeds if s is not None]
    labels = class_labels(seeds, len(classes))
    return None if labels is None else labels.tolist()


def path_classes(req: GenerateRequest, classes: tuple[str, ...]) -> tuple[int, int] | None:
    """The classes at the two ends of an interpolation path on a conditional model, whose
    embedding is mixed along it (None: no interpolation, an unconditional model, or ``label``
    given, which fixes every image's class); 422 for from_label/to_label an unconditional
    model cannot take, an unknown class, from_label/to_label beside label, and an end given as
    a latent (no seed, so no default class) without its label."""
    from gan.sampling import LabelError, resolve_label

    spec = req.interpolate
    if spec is None:
        return None
    named = [f"{end}_label" for end in ("from", "to") if getattr(spec, f"{end}_label") is not None]
    if not classes:
        if named:
            raise field_error(
                ["interpolate", named[0]],
                f"this model is unconditional (GET /info lists no classes): drop {named[0]}",
            )
        return None
    if req.label is not None:
        if named:
            raise field_error(
                ["interpolate", named[0]],
                "give label (one class for every image) or interpolate.from_label/to_label "
                "(a class at each end, mixed along the path), not both",
            )
        return None
    ends: list[int] = []
    for end in ("from", "to"):
        label, seed = getattr(spec, f"{end}_label"), getattr(spec, f"{end}_seed")
        if label is not None:
            try:
                ends.append(resolve_label(label, classes))
            except LabelError as exc:
                raise field_error(["interpolate", f"{end}_label"], str(exc)) from exc
        elif seed is not None:
            ends.append(seed % len(classes))
        else:
            raise field_error(
                ["interpolate", f"{end}_label"],
                f"this model is class-conditional and {end}_z carries no seed: give "
                f"{end}_label (one of {len(classes)} classes, see GET /info)",
            )
    return ends[0], ends[1]


def _either(names: Iterable[str]) -> str:
    """``plain, langevin or pixel_ascent``."""
    listed = list(names)
    return ", ".join(listed[:-1]) + " or " + listed[-1] if len(listed) > 1 else "".join(listed)


def _validated_options(req: GenerateRequest) -> MethodOptions:
    """The request's typed options, checked once (against the OptionSpecs, through the options
    model generated from them, so that a 422 has FastAPI's format)."""
    spec = METHODS[req.method]
    given = req.method_options or {}
    if given and not spec.options:
        raise field_error(
            ["method_options"],
            f"method {req.method!r} takes no options; choose a method that does (GET /info "
            "generate.methods) or drop method_options",
        )
    try:
        validated = METHOD_OPTION_MODELS[req.method].model_validate(given)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {
                    "loc": ["body", "method_options", *err["loc"]],
                    "msg": f"{err['msg']} (method {req.method}: see GET /info generate.methods)",
                    "type": err["type"],
                }
                for err in exc.errors(include_url=False)
            ]
        ) from exc
    return spec.build(validated.model_dump())


def plan_method(
    req: GenerateRequest,
    plan: Plan,
    *,
    caps: Caps,
    calibration: Calibration | None,
    kind: str = "gan",
    ebm: EBMSearch | None = None,
) -> MethodOptions:
    """The request's sampling method and its validated options; 422 for options the method
    does not take or out of range, a value above a cost cap, a method on z or interpolate (no
    seeds), a method this model kind cannot run (its declaration's networks against the
    kind's), a kind whose plain sampling is a Langevin search longer than its cap, and a method
    that needs a calibration this checkpoint lacks."""
    spec = METHODS[req.method]
    options = _validated_options(req)
    values = {o.name: getattr(options, o.name) for o in spec.options}
    refusal = kind_refusal(kind, req.method, options)
    if refusal is not None:
        raise field_error(["method"], refusal, "kind_unsupported")
    declared = model_kind(kind)
    if not declared.has_generator and plan.request_seed is None:
        source = "interpolate" if req.interpolate is not None else "z"
        raise field_error(
            [source],
            f"this checkpoint is {declared.what()}: it has no latents; each image is a Langevin "
            "search on D from its seed's noise, so give seed and n",
        )
    if not declared.has_generator and req.truncation is not None:
        raise field_error(
            ["truncation"],
            f"truncation applies to latents, and this checkpoint is {declared.what()}: it has "
            "none; drop truncation",
        )
    if spec.kind_plain and declared.plain_needs_gradients:
        steps = (ebm or EBMSearch()).steps
        limit = caps.cost(EBM_STEPS_CAP)
        if steps > limit:
            raise field_error(
                ["method"],
                f"this {kind} samples with a Langevin search of {steps} steps per image (its "
                f"config.json 'ebm'), more than this server allows: at most {limit} "
                f"({setting_env(EBM_STEPS_CAP)})",
                "cost_cap",
            )
    for option in spec.options:
        if option.cap is not None and values[option.name] > caps.cost(option.cap):
            raise field_error(
                ["method_options", option.name],
                f"{option.name} is {values[option.name]}, more than this server allows: at most "
                f"{caps.cost(option.cap)} per image ({option.cap_env})",
                "cost_cap",
            )
    if spec.needs_seeds and plan.request_seed is None:
        source = "interpolate" if req.interpolate is not None else "z"
        raise field_error(
            ["method"],
            f"method {req.method!r} works on seeded images (its extra proposals and noise come "
            f"from each image's seed): give seed and n instead of {source}, or method plain",
        )
    if spec.needs_calibration and calibration is None:
        raise field_error(
            ["method"],
            f"method {req.method!r} needs a calibrated discriminator, and the served checkpoint "
            "has none (GET /info: calibration is null); add one with `gan-calibrate "
            f"--checkpoint DIR` on the checkpoint folder and restart the server, or use "
            f"{_either(n for n, s in METHODS.items() if not s.needs_calibration)}",
            "calibration_missing",
        )
    if spec.calibration_check is not None and calibration is not None:
        problem = spec.calibration_check(options, calibration)
        if problem is not None:
            raise field_error(["method_options", problem.option or "method"], str(problem))
    return options


def batched_plain(kind: str, options: MethodOptions) -> bool:
    """Whether the images are one batched G pass of the plan's latents (the kind's plain
    sampling through G) rather than a sampler run."""
    return METHODS[method_of(options)].kind_plain and model_kind(kind).plain == "generator"
