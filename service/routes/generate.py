"""POST /generate: images from seeds, explicit latents or an interpolation path."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from gan.io import encode_animation, encode_grid, encode_pngs
from gan.latents import TRUNCATION_MODE, seed_latent, slerp
from gan.samplers import METHODS, MethodOptions, options_dict
from service.batching import GENERATOR
from service.deps import engine_of, protected
from service.planning import (
    Caps,
    Plan,
    batched_plain,
    path_classes,
    plan_labels,
    plan_method,
    plan_request,
)
from service.routes import ModelEndpoint
from service.schemas import (
    ANIMATED_FORMATS,
    METHOD_OPTION_EXAMPLES,
    OUTPUT_FORMATS,
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

    from gan.classmix import Classes
    from gan.samplers.results import GuidedResult

T = TypeVar("T")

router = APIRouter(tags=["generate"])

MODEL_HEADERS = {
    "X-Model-Id": {"description": "Model that made the image", "schema": {"type": "string"}},
    "X-Model-Step": {"description": "Its training step", "schema": {"type": "integer"}},
    "X-Checkpoint-Hash": {"description": "Hash of its weight files", "schema": {"type": "string"}},
    "X-Seed": {
        "description": "The request seed (absent for z and interpolation)",
        "schema": {"type": "integer"},
    },
    "X-Image-Count": {"description": "Images in the response", "schema": {"type": "integer"}},
    "X-Frame-Ms": {
        "description": "Formats gif and webp: each frame's duration in ms",
        "schema": {"type": "integer"},
    },
}
#: The model route of this module (service.app derives admission and metrics from it).
ENDPOINTS = (ModelEndpoint("/generate", GENERATOR, MODEL_HEADERS),)


# Requests with at most this many output pixels draw their latents and encode their PNGs on the
# event loop: for one 28x28 image that is ~10 us of latents and ~40 us of PNG (measured), less
# than a hop to a worker thread and back. Larger requests use worker threads.
INLINE_MAX_PIXELS = 8 * 28 * 28


async def _off_loop(inline: bool, fn: Callable[..., T], *args: Any) -> T:
    return fn(*args) if inline else await run_in_threadpool(fn, *args)


def build_latents(plan: Plan, req: GenerateRequest, z_dim: int) -> torch.Tensor:
    """float32 ``[count, z_dim]``: per-image seeds, explicit rows, or the slerp path."""
    import torch

    if plan.z is not None:
        return torch.tensor(plan.z, dtype=torch.float32)
    if plan.weights is not None and req.interpolate is not None:
        spec = req.interpolate

        def end(seed: int | None, z: list[float] | None) -> torch.Tensor:
            if z is not None:  # as {"z": [z]} makes it
                return torch.tensor([z], dtype=torch.float32)[0]
            assert seed is not None  # plan_request checked that each end has one
            return seed_latent(seed, z_dim, plan.truncation)

        z0, z1 = end(spec.from_seed, spec.from_z), end(spec.to_seed, spec.to_z)
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
        "description": "8 images on the slerp path from seed 1 to seed 2 (on a conditional "
        "model, from seed 1's class to seed 2's).",
        "value": {"interpolate": {"from_seed": 1, "to_seed": 2, "steps": 8}, "format": "grid"},
    },
    "interpolate_classes_gif": {
        "summary": "A walk across classes as an animated GIF",
        "description": "Class-conditional models: 16 frames from seed 3 as a '3' to seed 8 as "
        "an '8', 80 ms each, looping. curl: ... -o walk.gif",
        "value": {
            "interpolate": {
                "from_seed": 3,
                "to_seed": 8,
                "from_label": 3,
                "to_label": 8,
                "steps": 16,
                "frame_ms": 80,
            },
            "format": "gif",
        },
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
    "interpolate returns the slerp path between two seeds or latents (from_z/to_z), on a "
    "class-conditional model mixing the two ends' class embeddings (from_label/to_label), so "
    "its ends are the two seeds' images; format gif or webp returns it as an animation. method (with method_options) puts D "
    "to work at sampling time: drs and mh (need a calibrated D), langevin, pixel_ascent (GET "
    "/info generate.methods lists them); the json format reports each image's proposals or "
    "steps and D's logit before and after, and the request's acceptance rate and time. Example: "
    "`curl -s -X POST http://127.0.0.1:8000/generate -H 'Content-Type: application/json' "
    "-d '{\"seed\": 42}' -o digit.png`.",
    response_model=GenerateResponse,
    responses={
        200: {
            "description": ", ".join(
                f"{f.media_type} for format {f.name}" for f in OUTPUT_FORMATS.values()
            ),
            "headers": ENDPOINTS[0].headers,
            "content": {
                f.media_type: {"schema": {"type": "string", "format": "binary"}}
                for f in OUTPUT_FORMATS.values()
                if f.media_type != "application/json"
            },
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

    from gan.classmix import ClassMix

    engine, caps = engine_of(request, req.model), Caps.of(request.app.state.settings)
    plan = plan_request(req, z_dim=engine.z_dim, max_images=caps.max_images)
    options = plan_method(
        req,
        plan,
        caps=caps,
        calibration=engine.calibration,
        kind=engine.kind,
        ebm=engine.config.ebm,
    )
    inline = plan.count * engine.resolution**2 <= INLINE_MAX_PIXELS
    classes = engine.config.classes
    labels = plan_labels(req, plan, classes)
    ends = path_classes(req, classes)
    started = time.perf_counter()
    guided: GuidedResult | None = None
    latents: torch.Tensor | None
    with engine.arriving(GENERATOR) as arrival:
        y = None if labels is None else torch.tensor(labels, dtype=torch.int64)
        if batched_plain(engine.kind, options):  # one batched G pass
            classes_in: Classes | None = y
            if ends is not None and ends[0] != ends[1] and plan.weights is not None:
                classes_in = ClassMix.between(ends[0], ends[1], plan.weights)  # across classes
            latents = await _off_loop(inline, build_latents, plan, req, engine.z_dim)
            images = await engine.generate(latents, classes_in, arrival=arrival)
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
    if plan.format in ANIMATED_FORMATS and req.interpolate is not None:
        frame_ms = req.interpolate.frame_ms
        animation = await run_in_threadpool(encode_animation, images, plan.format, frame_ms)
        headers["X-Frame-Ms"] = str(frame_ms)
        media_type = OUTPUT_FORMATS[plan.format].media_type
        return Response(animation, media_type=media_type, headers=headers)
    pngs = await _off_loop(inline, encode_pngs, images)
    rows: list[list[float] | None] = (
        latents.tolist() if latents is not None else [None] * plan.count
    )
    weights: list[float | None] = list(plan.weights) if plan.weights else [None] * plan.count
    from gan.samplers.results import ImageStats

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
            from_label=None if ends is None else ends[0],
            to_label=None if ends is None else ends[1],
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
