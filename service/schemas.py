"""Request and response bodies of the HTTP API (pydantic v2), with worked examples for /docs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from gan.latents import SEED_LIMIT, TRUNCATION_MAX, TRUNCATION_MIN, TRUNCATION_MODE

Seed = Annotated[
    int, Field(ge=0, lt=SEED_LIMIT, description=f"Integer in [0, 2**53) = [0, {SEED_LIMIT}).")
]
LatentValue = Annotated[float, Field(allow_inf_nan=False, ge=-1e6, le=1e6)]

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


class InterpolateSpec(BaseModel):
    """Images along the slerp path from the latent of ``from_seed`` to that of ``to_seed``."""

    model_config = ConfigDict(extra="forbid")

    from_seed: Seed
    to_seed: Seed
    steps: int = Field(
        default=8,
        ge=2,
        description="Images on the path, both ends included (at most GAN_MAX_IMAGES).",
    )


#: A class: its index (0..K-1) or its name, as GET /info lists them.
Label = Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1, max_length=200)]


class GenerateRequest(BaseModel):
    """What to generate. Give at most one of ``seed``, ``z`` and ``interpolate``."""

    model_config = ConfigDict(extra="forbid")

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
    format: Literal["png", "grid", "json"] | None = Field(
        default=None,
        description="png: one image/png (exactly one image, else 422); grid: one image/png grid "
        "of all images; json: base64 PNGs with each image's seed and latent. Left out: png for "
        "one image, grid for several.",
    )
    interpolate: InterpolateSpec | None = Field(
        default=None,
        description="Return the images along the path between two seeds (grid or json).",
    )
    label: Label | list[Label] | None = Field(
        default=None,
        description="Class-conditional models only (GET /info lists 'classes'): the class of "
        "every image (an index or a class name), or a list with one per image. Left out: image "
        "seed s gets class s mod K (uniform and reproducible); with z it is required; on an "
        "interpolation path every image gets from_seed's class.",
    )


class GeneratedImage(BaseModel):
    index: int
    seed: int | None = Field(
        description="Reproduces this image alone with {seed, n: 1} (null for z or interpolation)."
    )
    latent: list[float] = Field(
        description="The latent vector; {z: [latent]} reproduces the image."
    )
    t: float | None = Field(default=None, description="Position on the interpolation path (0..1).")
    label: int | None = Field(
        default=None, description="The image's class index (conditional models; else null)."
    )
    class_name: str | None = Field(
        default=None, description="The image's class name (conditional models; else null)."
    )
    png_base64: str


class InterpolationInfo(BaseModel):
    from_seed: int
    to_seed: int
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
                "images": [
                    {
                        "index": 0,
                        "seed": 42,
                        "latent": [0.336690, 0.128809, 0.234462, "… z_dim values"],
                        "t": None,
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
    realness_percentile: float | None = Field(
        description="Percentage (0..100) of held-out real images that D scored lower; null when "
        "the checkpoint stores no real_scores."
    )
    label: int | None = Field(
        default=None,
        description="Conditional models: the class scored (the one requested, else the class "
        "D scores highest); null for unconditional models.",
    )
    class_name: str | None = Field(default=None, description="That class's name.")
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
    limits: dict[str, Any]
    preprocessing: dict[str, Any]
    generate: dict[str, Any]
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
                "generate": {"formats": ["png", "grid", "json"], "truncation_mode": "resample"},
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
