"""POST /generate: images from seeds, explicit latents or an interpolation path."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gan.io import encode_grid, encode_pngs
from gan.latents import (
    TRUNCATION_MODE,
    image_seeds,
    interpolation_weights,
    random_seed,
    seed_latent,
    slerp,
)
from gan.methods import (
    LANGEVIN_CAP,
    METHODS,
    EBMSearch,
    MethodOptions,
    PlainOptions,
    kind_refusal,
    options_dict,
    parse_options,
)
from service.batching import GENERATOR
from service.deps import engine_of, protected
from service.schemas import (
    METHOD_OPTION_EXAMPLES,
    METHOD_OPTION_MODELS,
    ErrorResponse,
    GeneratedImage,
    GenerateRequest,
    GenerateResponse,
    InterpolationInfo,
    ModelRef,
    SamplingInfo,
)

if TYPE_CHECKING:
    import torch

    from gan.checkpoint import Calibration
    from gan.guided import GuidedResult
    from service.settings import Settings

T = TypeVar("T")

router = APIRouter(tags=["generate"])

#: Paths of this router that run the models: admission control (GAN_QUEUE_SIZE) and the
#: per-route rejection metrics cover exactly these (service.app collects them).
MODEL_PATHS: tuple[str, ...] = ("/generate",)

# Requests with at most this many output pixels draw their latents and encode their PNGs on the
# event loop: for one 28x28 image that is ~10 us of latents and ~40 us of PNG (measured), less
# than a hop to a worker thread and back. Larger requests use worker threads.
INLINE_MAX_PIXELS = 8 * 28 * 28


async def _off_loop(inline: bool, fn: Callable[..., T], *args: Any) -> T:
    return fn(*args) if inline else await run_in_threadpool(fn, *args)


def field_error(
    loc: list[str | int], msg: str, kind: str = "value_error"
) -> RequestValidationError:
    """A 422 in FastAPI's own format, naming the field at fault."""
    return RequestValidationError([{"loc": ["body", *loc], "msg": msg, "type": kind}])


@dataclass
class Plan:
    """A validated request: which latents to make and how to report them."""

    count: int
    format: str  # png, grid or json (resolved when the request left it out)
    request_seed: int | None
    seeds: list[int | None]
    truncation: float | None
    weights: list[float] | None  # interpolation positions
    z: list[list[float]] | None


def _resolve_format(req: GenerateRequest, count: int) -> str:
    if req.format is None:
        return "png" if count == 1 else "grid"
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
        steps = req.interpolate.steps
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

    if not classes:
        if req.label is not None:
            raise field_error(
                ["label"], "this model is unconditional (GET /info lists no classes): drop label"
            )
        return None
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
    if req.interpolate is not None:
        return [req.interpolate.from_seed % len(classes)] * plan.count
    seeds = [s for s in plan.seeds if s is not None]
    labels = class_labels(seeds, len(classes))
    return None if labels is None else labels.tolist()


def cost_cap(settings: Settings, setting: str) -> int:
    """The value of a cost-cap setting by its environment name (GAN_MAX_PROPOSALS, ...)."""
    value: int = getattr(settings, setting.removeprefix("GAN_").lower())
    return value


def plan_method(
    req: GenerateRequest,
    plan: Plan,
    *,
    settings: Settings,
    calibration: Calibration | None,
    kind: str = "gan",
    ebm: EBMSearch | None = None,
) -> MethodOptions:
    """The request's sampling method and its validated options; 422 for options the method
    does not take or out of range, a value above a cost cap, a method on z or interpolate (no
    seeds), a method this model kind cannot run (the D-guided ones on a vae, ae or ebm), an
    ebm whose Langevin search is longer than GAN_MAX_LANGEVIN_STEPS, and a method that needs a
    calibration this checkpoint lacks."""
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
    values = validated.model_dump()
    refusal = kind_refusal(kind, req.method, parse_options(req.method, values))
    if refusal is not None:
        raise field_error(["method"], refusal, "kind_unsupported")
    if kind == "ebm" and plan.request_seed is None:
        source = "interpolate" if req.interpolate is not None else "z"
        raise field_error(
            [source],
            "this checkpoint is an ebm (D alone): it has no latents; each image is a Langevin "
            "search on D from its seed's noise, so give seed and n",
        )
    if kind == "ebm" and req.truncation is not None:
        raise field_error(
            ["truncation"],
            "truncation applies to latents, and this checkpoint is an ebm (D alone): it has "
            "none; drop truncation",
        )
    if kind == "ebm" and req.method == "plain":
        steps = (ebm or EBMSearch()).steps
        limit = cost_cap(settings, LANGEVIN_CAP)
        if steps > limit:
            raise field_error(
                ["method"],
                f"this ebm samples with a Langevin search of {steps} steps per image (its "
                f"config.json 'ebm'), more than this server allows: at most {limit} "
                f"({LANGEVIN_CAP})",
                "cost_cap",
            )
    for option in spec.options:
        if option.cap is not None and values[option.name] > cost_cap(settings, option.cap):
            limit = cost_cap(settings, option.cap)
            raise field_error(
                ["method_options", option.name],
                f"{option.name} is {values[option.name]}, more than this server allows: at most "
                f"{limit} per image ({option.cap})",
                "cost_cap",
            )
    if req.method != "plain" and plan.request_seed is None:
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
            "--checkpoint DIR` on the checkpoint folder and restart the server, or use plain, "
            "langevin or pixel_ascent",
            "calibration_missing",
        )
    if req.method == "drs" and calibration is not None:
        levels = calibration.drs.keep_levels
        if not levels[0] <= values["keep"] <= levels[-1]:
            raise field_error(
                ["method_options", "keep"],
                f"keep is {values['keep']}, but this checkpoint's calibration measured gamma for "
                f"keep {levels[0]:g}..{levels[-1]:g} only (refit it with gan-calibrate)",
            )
    return parse_options(req.method, values)


def build_latents(plan: Plan, req: GenerateRequest, z_dim: int) -> torch.Tensor:
    """float32 ``[count, z_dim]``: per-image seeds, explicit rows, or the slerp path."""
    import torch

    if plan.z is not None:
        return torch.tensor(plan.z, dtype=torch.float32)
    if plan.weights is not None and req.interpolate is not None:
        z0 = seed_latent(req.interpolate.from_seed, z_dim, plan.truncation)
        z1 = seed_latent(req.interpolate.to_seed, z_dim, plan.truncation)
        return slerp(z0, z1, plan.weights)
    from gan.sampling import latents

    seeds = [s for s in plan.seeds if s is not None]
    return latents(z_dim, seeds=seeds, truncation=plan.truncation)


GENERATE_EXAMPLES: dict[str, Any] = {
    "one_png": {
        "summary": "One PNG from a seed",
        "description": "image/png; same seed, same bytes. curl: -d '{\"seed\": 42}' -o digit.png",
        "value": {"seed": 42, "format": "png"},
    },
    "grid": {
        "summary": "A grid of 16 images",
        "description": "One PNG with 16 images; image i uses seed 7 + i.",
        "value": {"n": 16, "seed": 7, "format": "grid"},
    },
    "json_truncated": {
        "summary": "JSON with seeds and latents, truncated",
        "description": "Each image comes with its own seed and latent, so it reproduces alone.",
        "value": {"n": 4, "seed": 123, "truncation": 0.7, "format": "json"},
    },
    "explicit_z": {
        "summary": "Explicit latent vectors",
        "description": "Rows of length z_dim (GET /info); here z_dim = 4 for brevity.",
        "value": {"z": [[0.1, -1.2, 0.5, 0.0]], "format": "json"},
    },
    "interpolate": {
        "summary": "Interpolation between two seeds",
        "description": "8 images on the slerp path from seed 1 to seed 2.",
        "value": {"interpolate": {"from_seed": 1, "to_seed": 2, "steps": 8}, "format": "grid"},
    },
    **{
        f"method_{name}": {
            "summary": f"Sampling method {name}",
            "description": METHODS[name].description,
            "value": {
                "n": 4,
                "seed": 7,
                "method": name,
                "method_options": options,
                "format": "json",
            },
        }
        for name, options in METHOD_OPTION_EXAMPLES.items()
        if name != "plain"
    },
}

_MODEL_HEADERS = {
    "X-Model-Id": {"description": "Model that made the image", "schema": {"type": "string"}},
    "X-Model-Step": {"description": "Its training step", "schema": {"type": "integer"}},
    "X-Checkpoint-Hash": {"description": "Hash of its weight files", "schema": {"type": "string"}},
    "X-Seed": {
        "description": "The request seed (absent for z and interpolation)",
        "schema": {"type": "integer"},
    },
    "X-Image-Count": {"description": "Images in the response", "schema": {"type": "integer"}},
}


def sampling_info(
    options: MethodOptions, result: GuidedResult | None, count: int, seconds: float
) -> SamplingInfo:
    """The response's ``sampling`` record: plain (no result) made ``count`` G forwards."""
    if result is None:
        cost = {
            "generator_forwards": count,
            "discriminator_forwards": 0,
            "generator_backwards": 0,
            "discriminator_backwards": 0,
        }
        return SamplingInfo(
            method="plain", method_options={}, acceptance_rate=None, seconds=seconds, cost=cost
        )
    return SamplingInfo(
        method=result.method,  # type: ignore[arg-type]
        method_options=options_dict(options),
        acceptance_rate=result.acceptance_rate,
        seconds=seconds,
        cost=result.cost.as_dict(),
    )


@router.post(
    "/generate",
    **protected(),
    summary="Generate images",
    description="Draw images from the generator. Image i of a request with seed S uses seed "
    "S + i, so {seed: S + i, n: 1} reproduces it alone; without a seed a random one is drawn "
    "and reported (X-Seed, and 'seed' in JSON). Formats: png (exactly one image, image/png), "
    "grid (all images in one image/png, ceil(sqrt(n)) columns, 2 px black padding), json "
    "(base64 PNGs with each image's seed and latent); left out: png for one image, grid for "
    "several. Every field is optional; no body at all is the same as {}. Truncation (mode 'resample') redraws latent components with |z_j| > t; "
    "interpolate returns the slerp path between two seeds. method (with method_options) puts D "
    "to work at sampling time: drs and mh (need a calibrated D), langevin, pixel_ascent (GET "
    "/info generate.methods lists them); the json format reports each image's proposals or "
    "steps and D's logit before and after, and the request's acceptance rate and time. Example: "
    "`curl -s -X POST http://127.0.0.1:8000/generate -H 'Content-Type: application/json' "
    "-d '{\"seed\": 42}' -o digit.png`.",
    response_model=GenerateResponse,
    responses={
        200: {
            "description": "image/png for format png and grid, JSON for format json",
            "headers": _MODEL_HEADERS,
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
        },
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
        422: {"model": ErrorResponse, "description": "A field is out of range; loc names it"},
    },
)
async def generate(
    request: Request,
    req: Annotated[GenerateRequest | None, Body(openapi_examples=GENERATE_EXAMPLES)] = None,
) -> Response:
    req = req if req is not None else GenerateRequest()  # no body at all: every default, like {}
    import torch

    engine, settings = engine_of(request), request.app.state.settings
    plan = plan_request(req, z_dim=engine.z_dim, max_images=settings.max_images)
    options = plan_method(
        req,
        plan,
        settings=settings,
        calibration=engine.calibration,
        kind=engine.kind,
        ebm=engine.config.ebm,
    )
    inline = plan.count * engine.resolution**2 <= INLINE_MAX_PIXELS
    classes = engine.config.classes
    labels = plan_labels(req, plan, classes)
    started = time.perf_counter()
    guided: GuidedResult | None = None
    latents: torch.Tensor | None
    with engine.arriving(GENERATOR) as arrival:
        y = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        if isinstance(options, PlainOptions) and engine.kind != "ebm":  # one batched G pass
            latents = await _off_loop(inline, build_latents, plan, req, engine.z_dim)
            images = await engine.generate(latents, y, arrival=arrival)  # uint8 [B, C, R, R]
        else:
            seeds = [s for s in plan.seeds if s is not None]
            guided = await engine.sample(
                options, seeds, y, truncation=plan.truncation, arrival=arrival
            )
            images, latents = guided.images, guided.latents
    sampling = sampling_info(options, guided, plan.count, time.perf_counter() - started)
    headers = engine.info.headers()
    headers["X-Image-Count"] = str(plan.count)
    if plan.request_seed is not None:
        headers["X-Seed"] = str(plan.request_seed)
    headers["X-Sampling-Method"] = sampling.method
    headers["X-Sampling-Seconds"] = f"{sampling.seconds:.6f}"
    if sampling.acceptance_rate is not None:
        headers["X-Acceptance-Rate"] = f"{sampling.acceptance_rate:.6f}"
    if plan.format == "png":
        png = (await _off_loop(inline, encode_pngs, images))[0]
        return Response(png, media_type="image/png", headers=headers)
    if plan.format == "grid":
        png, columns = await _off_loop(inline, encode_grid, images)
        headers["X-Grid-Columns"] = str(columns)
        return Response(png, media_type="image/png", headers=headers)
    pngs = await _off_loop(inline, encode_pngs, images)
    rows: list[list[float] | None] = (
        latents.tolist() if latents is not None else [None] * plan.count
    )
    weights: list[float | None] = list(plan.weights) if plan.weights else [None] * plan.count
    from gan.guided import ImageStats

    plain_stats = ImageStats(
        proposals=1, steps=0, accepted=None, logit_before=None, logit_after=None
    )
    stats = guided.stats if guided is not None else [plain_stats] * plan.count
    body = GenerateResponse(
        model=ModelRef.model_validate(engine.info.as_dict()),
        seed=plan.request_seed,
        truncation=plan.truncation,
        truncation_mode=TRUNCATION_MODE if plan.truncation is not None else None,
        interpolation=None
        if req.interpolate is None
        else InterpolationInfo(
            from_seed=req.interpolate.from_seed,
            to_seed=req.interpolate.to_seed,
            steps=req.interpolate.steps,
        ),
        width=engine.resolution,
        height=engine.resolution,
        channels=engine.channels,
        sampling=sampling,
        images=[
            GeneratedImage(
                index=i,
                seed=plan.seeds[i],
                latent=rows[i],
                t=weights[i],
                label=None if labels is None else labels[i],
                class_name=None if labels is None else classes[labels[i]],
                method=sampling.method,
                proposals=stats[i].proposals,
                steps=stats[i].steps,
                accepted=stats[i].accepted,
                logit_before=stats[i].logit_before,
                logit_after=stats[i].logit_after,
                png_base64=base64.b64encode(pngs[i]).decode("ascii"),
            )
            for i in range(plan.count)
        ],
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)
