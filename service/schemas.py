"""Request and response bodies of the HTTP API (pydantic v2), with worked examples for /docs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, WithJsonSchema, create_model
from pydantic.config import JsonDict

from gan.io import FRAME_MS_MAX, FRAME_MS_MIN, animation_formats
from gan.latents import SEED_LIMIT, TRUNCATION_MAX, TRUNCATION_MIN, TRUNCATION_MODE
from gan.samplers import METHOD_NAMES, METHODS, OptionSpec, Sampler
from gan.samplers.options import setting_env

Seed = Annotated[
    int, Field(ge=0, lt=SEED_LIMIT, description=f"Integer in [0, 2**53) = [0, {SEED_LIMIT}).")
]
LatentValue = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]
ModelName = Annotated[str, Field(min_length=1, max_length=64, examples=["mnist"])]

EXAMPLE_MODEL: JsonDict = {
    "model_id": "mnist-dcgan-28px-step20000-3f2a9c1b",
    "step": 20000,
    "checkpoint_hash": "3f2a9c1b7d4e5a60",
}


class ModelRef(BaseModel):
    """Which model produced a response (also sent as X-Model-Id, X-Model-Step, X-Checkpoint-Hash)."""

    model_id: str
    step: int
    checkpoint_hash: str


# ------------------------------------------------------------------------------------------
# /generate
# ------------------------------------------------------------------------------------------


#: A class: its index (0..K-1) or its name, as GET /info lists them.
Label = Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1, max_length=200)]


@dataclass(frozen=True)
class OutputFormat:
    """One response format of ``POST /generate``."""

    name: str
    media_type: str
    description: str
    animated: bool = False  # an interpolation path as one animation (needs interpolate)


#: The response formats of POST /generate, each declared once: the request schema, the route's
#: responses, GET /info generate.formats and the page derive from it. webp is listed where this
#: Pillow writes animated WebP (gan.io.animation_formats).
OUTPUT_FORMATS: dict[str, OutputFormat] = {
    f.name: f
    for f in (
        OutputFormat("png", "image/png", "one image/png (exactly one image, else 422)"),
        OutputFormat("grid", "image/png", "one image/png grid of all images"),
        OutputFormat(
            "json", "application/json", "base64 PNGs with each image's seed, latent and class"
        ),
        OutputFormat(
            "gif",
            "image/gif",
            "the interpolation path as an animated GIF, one frame per step, looping",
            animated=True,
        ),
        OutputFormat(
            "webp",
            "image/webp",
            "the interpolation path as an animated lossless WebP, one frame per step, looping",
            animated=True,
        ),
    )
    if not f.animated or f.name in animation_formats()
}
FORMAT_NAMES = tuple(OUTPUT_FORMATS)
ANIMATED_FORMATS = tuple(name for name, f in OUTPUT_FORMATS.items() if f.animated)
FormatName = Literal[FORMAT_NAMES]  # type: ignore[valid-type]


class InterpolateSpec(BaseModel):
    """Images along the path from one latent (``from_seed``'s, or ``from_z``) to another
    (``to_seed``'s, or ``to_z``): slerp between the latents and, on a class-conditional model,
    a linear mix of the two ends' class embeddings. The ends are exactly the images of
    ``{"seed": from_seed}`` and ``{"seed": to_seed}`` (or ``{"z": [from_z], "label": ...}``)."""

    model_config = ConfigDict(extra="forbid")

    from_seed: Seed | None = Field(
        default=None, description="The start: this seed's latent (or give from_z)."
    )
    to_seed: Seed | None = Field(
        default=None, description="The end: this seed's latent (or give to_z)."
    )
    from_z: list[LatentValue] | None = Field(
        default=None,
        description="The start as an explicit latent of z_dim numbers (GET /info), e.g. a "
        "projected image's; used as given (no truncation). Instead of from_seed.",
    )
    to_z: list[LatentValue] | None = Field(
        default=None, description="The end as an explicit latent; instead of to_seed."
    )
    from_label: Label | None = Field(
        default=None,
        description="Class-conditional models: the start's class (index or name). Left out: "
        "from_seed's own class, from_seed mod K (required with from_z).",
    )
    to_label: Label | None = Field(
        default=None,
        description="Class-conditional models: the end's class. Left out: to_seed mod K "
        "(required with to_z).",
    )
    steps: int = Field(
        default=8,
        ge=2,
        description="Images on the path, both ends included (at most GAN_MAX_IMAGES).",
    )
    frame_ms: int = Field(
        default=100,
        ge=FRAME_MS_MIN,
        le=FRAME_MS_MAX,
        description=f"Formats {', '.join(ANIMATED_FORMATS)}: how long each frame is shown, in "
        "milliseconds (GIF keeps hundredths of a second).",
    )


# ------------------------------------------------------------------------------------------
# Sampling methods (gan.samplers): names, one options model per method and the examples, all
# generated from the registry's declarations
# ------------------------------------------------------------------------------------------

MethodName = Literal[METHOD_NAMES]  # type: ignore[valid-type]

#: An example of method_options per method (docs/api.md shows the same).
METHOD_OPTION_EXAMPLES: dict[str, dict[str, Any]] = {
    name: dict(spec.example) for name, spec in METHODS.items()
}


def _option_field(option: OptionSpec) -> tuple[Any, Any]:
    bounds: dict[str, Any] = {}
    if option.minimum is not None:
        bounds["gt" if option.exclusive_minimum else "ge"] = option.minimum
    if option.maximum is not None:
        bounds["le"] = option.maximum
    if option.type == "string":
        kind: Any = Literal[option.choices]  # type: ignore[valid-type]
    elif option.type == "integer":
        kind = Annotated[int, Strict()]
    else:
        kind = Annotated[float, Strict()]
        bounds["allow_inf_nan"] = False
    cap = f" Capped by {option.cap_env}." if option.cap_env else ""
    return kind, Field(default=option.default, description=option.description + cap, **bounds)


def _options_model(spec: Sampler) -> type[BaseModel]:
    title = "".join(part.capitalize() for part in spec.name.split("_")) + "Options"
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        title,
        __config__=ConfigDict(
            extra="forbid",
            title=title,
            json_schema_extra={
                "description": f"method_options of {spec.name}: {spec.description}",
                "example": METHOD_OPTION_EXAMPLES[spec.name],
            },
        ),
        **{o.name: _option_field(o) for o in spec.options},
    )
    return model


#: The pydantic model of each method's ``method_options``, generated from its OptionSpecs (the
#: OpenAPI schema, and the 422s of a request's options in FastAPI's own format).
METHOD_OPTION_MODELS: dict[str, type[BaseModel]] = {
    name: _options_model(spec) for name, spec in METHODS.items()
}

#: The cost caps' settings, each once, in the order the methods name them.
_CAPS = dict.fromkeys(
    setting_env(o.cap) for spec in METHODS.values() for o in spec.options if o.cap is not None
)

_METHOD_OPTIONS_SCHEMA: dict[str, Any] = {
    "anyOf": [
        *(
            METHOD_OPTION_MODELS[name].model_json_schema()
            for name in METHOD_NAMES
            if METHODS[name].options
        ),
        {"type": "null"},
    ],
    "description": "Options of the chosen method (an object; its fields depend on method, "
    "see the schemas listed here and GET /info generate.methods). Left out: the method's "
    "defaults. Unknown fields and out-of-range values are a 422 that names the field; a value "
    f"above a cost cap ({', '.join(_CAPS)}) too.",
}


class GenerateRequest(BaseModel):
    """What to generate. Give at most one of ``seed``, ``z`` and ``interpolate``."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName | None = Field(
        default=None,
        description="Which served model (GET /models); left out: the default model.",
    )
    n: int = Field(
        default=1,
        ge=1,
        description="Number of images (1..GAN_MAX_IMAGES). With z it may be left out (= rows of z).",
    )
    seed: Seed | None = Field(
        default=None,
        description="Image i uses seed + i (mod 2**53); the same seed gives the same image bytes "
        "across restarts. Left out: a random seed is drawn and reported.",
    )
    z: list[list[LatentValue]] | None = Field(
        default=None,
        description="Explicit latent vectors, shape [n, z_dim] (z_dim: see GET /info). Used as "
        "given: no seed, no truncation.",
    )
    truncation: float | None = Field(
        default=None,
        ge=TRUNCATION_MIN,
        le=TRUNCATION_MAX,
        description=f"Truncation trick, mode '{TRUNCATION_MODE}': latent components with |z_j| > "
        "truncation are redrawn (from the same seed's generator) until all lie within "
        "[-truncation, truncation]. Smaller: more typical, less varied images.",
    )
    format: FormatName | None = Field(
        default=None,
        description="; ".join(f"{f.name}: {f.description}" for f in OUTPUT_FORMATS.values())
        + f" ({', '.join(ANIMATED_FORMATS)} with interpolate only). Left out: png for one "
        "image, grid for several.",
    )
    interpolate: InterpolateSpec | None = Field(
        default=None,
        description="Return the images along the path between two seeds or latents (grid, "
        f"json, or an animation: {', '.join(ANIMATED_FORMATS)}).",
    )
    label: Label | list[Label] | None = Field(
        default=None,
        description="Class-conditional models only (GET /info lists 'classes'): the class of "
        "every image (an index or a class name), or a list with one per image. Left out: image "
        "seed s gets class s mod K (uniform and reproducible); with z it is required. On an "
        "interpolation path it gives every image that class; left out there, the class "
        "embedding goes from interpolate.from_label to to_label (each end's seed mod K by "
        "default).",
    )
    method: MethodName = Field(
        default="plain",
        description="How images are made (docs/d-guided.md): plain (G alone, the default), drs "
        "(discriminator rejection sampling) and mh (Metropolis-Hastings over G's proposals; "
        "both need a calibrated D, see GET /info calibration), langevin (Langevin dynamics on "
        "the latent) and pixel_ascent (gradient ascent on D over the pixels: patterns D likes, "
        "not digits). Methods other than plain need seeds (not z or interpolate): their extra "
        "proposals and noise come from each image's seed, so a seed still gives the same image.",
    )
    method_options: Annotated[dict[str, Any] | None, WithJsonSchema(_METHOD_OPTIONS_SCHEMA)] = (
        Field(default=None)
    )


class GeneratedImage(BaseModel):
    index: int
    seed: int | None = Field(
        description="Reproduces this image alone with {seed, n: 1} and the same method and "
        "options (null for z or interpolation)."
    )
    latent: list[float] | None = Field(
        description="The latent vector the image is G of (drs, mh: the chosen proposal's; "
        "langevin: where the dynamics ended); {z: [latent]} reproduces the image with method "
        "plain. null for pixel_ascent, whose images are no output of G."
    )
    t: float | None = Field(default=None, description="Position on the interpolation path (0..1).")
    label: int | None = Field(
        default=None,
        description="The image's class index (conditional models; else null). Between two "
        "classes on an interpolation path: the nearer end's (interpolation.from_label below "
        "t = 0.5, to_label from it on).",
    )
    class_name: str | None = Field(
        default=None, description="The image's class name (conditional models; else null)."
    )
    method: MethodName = Field(default="plain", description="The sampling method.")
    proposals: int = Field(
        default=1,
        description="Images of G that D judged for this one: drs up to and including the "
        "accepted one, mh its K, plain and langevin 1, pixel_ascent 1 from a sample, 0 from noise.",
    )
    steps: int = Field(default=0, description="Gradient steps (langevin, pixel_ascent).")
    accepted: bool | None = Field(
        default=None,
        description="drs: a proposal was accepted within max_proposals (else the best-scoring "
        "one is returned); mh: the chain moved away from the plain image; else null.",
    )
    logit_before: float | None = Field(
        default=None,
        description="D's raw logit of the plain image (pixel_ascent: of its start), as /score "
        "would give it; null for plain, which does not run D.",
    )
    logit_after: float | None = Field(
        default=None, description="D's raw logit of the returned image; null for plain."
    )
    png_base64: str


class SamplingInfo(BaseModel):
    """How the images of a request were made, and what it cost."""

    method: MethodName
    method_options: dict[str, Any] = Field(description="Every option, defaults included.")
    acceptance_rate: float | None = Field(
        description="drs: images accepted / proposals tried; mh: chain moves accepted / moves "
        "proposed; null for the other methods."
    )
    seconds: float = Field(description="Time spent making the images, queueing included.")
    cost: dict[str, int] = Field(
        description="Images through each network: generator_forwards, discriminator_forwards, "
        "generator_backwards, discriminator_backwards."
    )


class InterpolationInfo(BaseModel):
    from_seed: int | None = Field(description="The start's seed (null when from_z was given).")
    to_seed: int | None = Field(description="The end's seed (null when to_z was given).")
    from_label: int | None = Field(
        default=None,
        description="Conditional models: the class embedding at t = 0 (null: unconditional, "
        "or label was given).",
    )
    to_label: int | None = Field(
        default=None, description="The class embedding at t = 1; linear in t between the two."
    )
    steps: int
    method: Literal["slerp"] = "slerp"


class GenerateResponse(BaseModel):
    model: ModelRef
    seed: int | None = Field(description="The request's seed (drawn at random when none was sent).")
    truncation: float | None
    truncation_mode: str | None
    interpolation: InterpolationInfo | None
    width: int
    height: int
    channels: int
    sampling: SamplingInfo
    images: list[GeneratedImage]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": EXAMPLE_MODEL,
                "seed": 42,
                "truncation": None,
                "truncation_mode": None,
                "interpolation": None,
                "width": 28,
                "height": 28,
                "channels": 1,
                "sampling": {
                    "method": "drs",
                    "method_options": {"keep": 0.8, "max_proposals": 32},
                    "acceptance_rate": 0.5,
                    "seconds": 0.004,
                    "cost": {
                        "generator_forwards": 2,
                        "discriminator_forwards": 2,
                        "generator_backwards": 0,
                        "discriminator_backwards": 0,
                    },
                },
                "images": [
                    {
                        "index": 0,
                        "seed": 42,
                        "latent": [0.336690, 0.128809, 0.234462, "… z_dim values"],
                        "t": None,
                        "method": "drs",
                        "proposals": 2,
                        "steps": 0,
                        "accepted": True,
                        "logit_before": -0.42,
                        "logit_after": 1.37,
                        "png_base64": "iVBORw0KGgoAAAANSUhEUgAAABwAAAAcCAAAAABXZoBIAAAA…",
                    }
                ],
            }
        }
    )


# ------------------------------------------------------------------------------------------
# /score
# ------------------------------------------------------------------------------------------


class ScoredImage(BaseModel):
    index: int
    filename: str | None = Field(description="The multipart file name; null for a raw body.")
    format: str = Field(description="Format detected from the bytes: PNG, JPEG, WEBP, BMP or GIF.")
    width: int
    height: int
    mode: str = Field(
        description="Pillow pixel mode as uploaded, before conversion (e.g. RGBA, I;16)."
    )
    frames: int = Field(description="Frames in the file; only the first is scored.")
    logit: float = Field(description="The discriminator's raw output.")
    probability: float = Field(description="sigmoid(logit): D's belief that the image is real.")
    calibrated_probability: float | None = Field(
        default=None,
        description="The probability that the image came from the training data rather than "
        "from this G (equal priors), from the checkpoint's calibration of D (GET /info "
        "calibration); valid for this checkpoint's G and D only. null when the checkpoint has no "
        "calibration (gan-calibrate adds one).",
    )
    realness_percentile: float | None = Field(
        description="Percentage (0..100) of held-out real images that D scored lower; null when "
        "the checkpoint stores no real_scores."
    )
    label: int | None = Field(
        default=None,
        description="Conditional models: the class scored: the one requested, else the class "
        "the checkpoint's encoder reads (class_source); null for unconditional models, and "
        "without a label on a checkpoint with no encoder (D is no classifier: logit is then "
        "its highest over the classes).",
    )
    class_name: str | None = Field(default=None, description="That class's name.")
    class_source: Literal["request", "encoder"] | None = Field(
        default=None,
        description="Where label came from: the request's ?label=, or the encoder's reading.",
    )
    class_probability: float | None = Field(
        default=None,
        description="The encoder's probability for label (class_source encoder).",
    )
    class_logits: list[float] | None = Field(
        default=None,
        description="Conditional models scored without a label: D's logit for the image paired "
        "with each class, by class index.",
    )


class PercentileReference(BaseModel):
    num_images: int | None
    source: str | None
    levels: int = Field(description="Number of stored quantile levels.")


class ScoreResponse(BaseModel):
    model: ModelRef
    preprocessing: dict[str, Any] = Field(
        description="How every image was converted to model pixels (gan.preprocess)."
    )
    percentile_reference: PercentileReference | None
    notes: list[str]
    results: list[ScoredImage]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": EXAMPLE_MODEL,
                "preprocessing": {
                    "function": "gan.preprocess.to_model_pixels",
                    "resolution": 28,
                    "channels": 1,
                    "color_mode": "L",
                    "steps": ["1. apply the EXIF orientation tag …", "…"],
                },
                "percentile_reference": {
                    "num_images": 10000,
                    "source": "mnist test split",
                    "levels": 1001,
                },
                "notes": [],
                "results": [
                    {
                        "index": 0,
                        "filename": "digit.png",
                        "format": "PNG",
                        "width": 28,
                        "height": 28,
                        "mode": "L",
                        "frames": 1,
                        "logit": 1.73,
                        "probability": 0.8494,
                        "calibrated_probability": 0.71,
                        "realness_percentile": 61.2,
                    }
                ],
            }
        }
    )


# ------------------------------------------------------------------------------------------
# /health, /ready, /info, errors
# ------------------------------------------------------------------------------------------


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"

    model_config = ConfigDict(json_schema_extra={"example": {"status": "ok"}})


class ReadyResponse(BaseModel):
    status: Literal["ready"] = "ready"
    model: ModelRef

    model_config = ConfigDict(
        json_schema_extra={"example": {"status": "ready", "model": EXAMPLE_MODEL}}
    )


class InfoResponse(BaseModel):
    model: ModelRef
    model_name: str = Field(
        default="default", description="The served model's name (`model` in requests)."
    )
    models: list[str] = Field(
        default_factory=list, description="Every served model's name, the default first."
    )
    kind: str = Field(
        default="gan",
        description="What the checkpoint holds: gan (G and D), vae or ae (an auto-encoder's "
        "decoder, served as G; no D, so /score answers 422) or ebm (D alone; /generate runs a "
        "Langevin search on D). docs/lecture.md.",
    )
    capabilities: dict[str, Any] = Field(
        default_factory=dict,
        description="What this kind of checkpoint can do (gan/kinds.py): its networks, whether "
        "/score (needs D) and interpolation (needs a latent) apply, what plain sampling is and "
        "how images are projected to latents; the page hides what does not apply.",
    )
    architecture: dict[str, Any] = Field(description="The checkpoint's model config (ModelConfig).")
    z_dim: int
    resolution: int
    channels: int
    device: str
    dataset: dict[str, Any]
    metrics: dict[str, Any]
    training: dict[str, Any]
    created_at: str | None
    normalisation: dict[str, Any]
    real_scores: PercentileReference | None
    classes: list[str] = Field(
        default_factory=list,
        description="Class names of a class-conditional model (index = label for /generate and "
        "/score); empty for an unconditional model.",
    )
    calibration: dict[str, Any] | None = Field(
        default=None,
        description="The calibration of D's logit (kind, expected calibration error, images it "
        "was fitted on), needed by the drs and mh methods and by /score's "
        "calibrated_probability; null when the checkpoint has none.",
    )
    refit: dict[str, Any] | None = Field(
        default=None,
        description="When D was refit after training with G frozen (gan-calibrate --refit; "
        "docs/d-guided.md): its steps, learning rate and batch, the source checkpoint's model "
        "id, and D's held-out logistic loss before and after (lower: a better density-ratio "
        "estimate for drs and mh); null for a D as training left it.",
    )
    limits: dict[str, Any]
    preprocessing: dict[str, Any]
    project: dict[str, Any] | None = Field(
        default=None,
        description="How POST /project works here: whether the checkpoint has an encoder to "
        "start from, the perceptual distance, steps and restarts (default and cap), and the "
        "candidate classes tried without a label; null for a kind that cannot project (ebm).",
    )
    generate: dict[str, Any] = Field(
        description="Conventions of /generate, and 'methods': each sampling method with its "
        "options (type, default, bounds, cap), whether it needs calibration and whether it is "
        "available on this checkpoint."
    )
    auth: dict[str, Any]

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "model": EXAMPLE_MODEL,
                "architecture": {
                    "resolution": 28,
                    "channels": 1,
                    "z_dim": 64,
                    "g_width": 64,
                    "d_width": 64,
                    "arch": "dcgan",
                },
                "z_dim": 64,
                "resolution": 28,
                "channels": 1,
                "device": "cpu",
                "dataset": {"name": "mnist"},
                "metrics": {"fid": 12.3},
                "training": {"batch_size": 128},
                "created_at": "2025-01-01T00:00:00Z",
                "normalisation": {"range": [-1.0, 1.0], "layout": "NCHW"},
                "real_scores": {"num_images": 10000, "source": "mnist test split", "levels": 1001},
                "limits": {
                    "max_images": 64,
                    "max_body_bytes": 10485760,
                    "max_image_pixels": 4194304,
                },
                "preprocessing": {
                    "function": "gan.preprocess.to_model_pixels",
                    "steps": ["…"],
                },
                "generate": {
                    "formats": ["png", "grid", "json"],
                    "truncation_mode": "resample",
                    "methods": [
                        {"name": "plain", "available": True, "options": []},
                        {
                            "name": "drs",
                            "available": True,
                            "needs_calibration": True,
                            "options": [
                                {
                                    "name": "keep",
                                    "type": "number",
                                    "default": 0.8,
                                    "minimum": 0.0,
                                    "maximum": 0.99,
                                },
                            ],
                        },
                    ],
                },
                "auth": {"api_key_required": False},
            }
        },
    )


class ErrorResponse(BaseModel):
    detail: str | list[dict[str, Any]] = Field(
        description="What went wrong and what to change; for 422 a list of {loc, msg, type}."
    )

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "detail": [
                    {
                        "loc": ["body", "n"],
                        "msg": "n is 500, at most 64 images per request (GAN_MAX_IMAGES)",
                        "type": "too_many_images",
                    }
                ]
            }
        }
    )


# --------------------------------------------------------------------------------------------
# POST /project
# --------------------------------------------------------------------------------------------


class DiscriminatorView(BaseModel):
    """D's opinion of one image (null where the checkpoint has no D)."""

    logit: float | None
    probability: float | None = Field(description="sigmoid(logit).")
    realness_percentile: float | None = Field(
        description="Percentage (0..100) of held-out real images D scored lower (null without "
        "real_scores)."
    )


class ProjectResponse(BaseModel):
    """An image's projection: the latent (and class) whose G(z) draws it."""

    model: ModelRef
    z: list[float] = Field(
        description='The latent, z_dim numbers: POST /generate {"z": [z], '
        '"label": label} draws exactly `image`.'
    )
    label: int | None = Field(description="The class projected under (conditional models).")
    class_name: str | None
    candidates: list[int | None] = Field(
        description="The classes tried (given, the encoder's most likely, or all)."
    )
    mse: float = Field(
        description="Pixel mean squared error in [0, 1] units against the converted upload."
    )
    distance: float | None = Field(description="Perceptual distance (see distance_name).")
    distance_name: str = Field(
        description="discriminator-features: LPIPS's formula without learned weights in the "
        "feature maps of the checkpoint's own D (encoder-features for an auto-encoder)."
    )
    image: str = Field(description="The reconstruction G(z) as a base64 PNG.")
    start: str = Field(
        description="encoder (the checkpoint's encoder guessed the start) or random."
    )
    steps: int
    restarts: int
    seed: int
    seconds: float
    upload: DiscriminatorView
    reconstruction: DiscriminatorView
    preprocessing: dict[str, Any]


class ModelEntry(BaseModel):
    """One served model (GET /models)."""

    name: str = Field(description="What requests give as `model`.")
    default: bool = Field(description="Requests that name no model get this one.")
    model_id: str
    step: int
    checkpoint_hash: str
    kind: str
    conditional: bool
    classes: list[str]
    resolution: int
    channels: int
    z_dim: int
    path: str = Field(description="The configured path (GAN_CHECKPOINTS); reloads read it.")
    checkpoint: str = Field(description="The checkpoint folder loaded from it.")
    loaded_at: float = Field(description="Unix time of the last load or swap.")
    reloads: int = Field(description="Swaps since start-up.")
    last_reload_error: str | None = Field(
        description="Why the last reload was refused (null after a good one)."
    )


class ModelsResponse(BaseModel):
    models: list[ModelEntry]
    default: str


class ReloadResponse(BaseModel):
    """A reload: the checkpoint now at the model's path, verified and swapped in."""

    name: str
    old_model_id: str
    new_model_id: str
    swapped: bool = Field(
        description="false when the path holds the checkpoint already served (same hash)."
    )
    seconds: float
