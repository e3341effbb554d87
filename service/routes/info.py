"""GET /info: the served model, its training record, the limits and the preprocessing."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from gan.dataset_info import portable_dataset_info
from gan.kinds import ModelKind
from gan.latents import SEED_LIMIT, TRUNCATION_MAX, TRUNCATION_MIN, TRUNCATION_MODE
from gan.samplers import METHODS, kind_refusal
from service.deps import SettingsDep, protected, registry_of, slot_of
from service.inference import InferenceEngine
from service.routes import ModelEndpoint
from service.routes.score import preprocessing_report
from service.schemas import (
    ANIMATED_FORMATS,
    FORMAT_NAMES,
    ErrorResponse,
    InfoResponse,
    ModelRef,
    PercentileReference,
)
from service.settings import Settings

router = APIRouter(tags=["info"])

ENDPOINTS: tuple[ModelEndpoint, ...] = ()  # runs no model


def plain_description(kind: ModelKind) -> str:
    """What method ``plain`` does on a checkpoint of ``kind`` (``generate.plain`` in /info)."""
    if kind.plain == "langevin_search":
        return (
            "a Langevin search on D's logit over the pixels from the seed's uniform noise, with "
            "the steps in ebm_search (a backward pass of D per step)"
        )
    if kind.has_encoder:  # an auto-encoder's decoder
        return "the decoder (served as G) of the seed's latent, drawn from the prior N(0, I)"
    return "G(z) for the seed's latent"


def methods_info(settings: Settings, calibrated: bool, kind: str = "gan") -> list[dict[str, Any]]:
    """``generate.methods``: each method with its options (type, default, bounds; an option's
    maximum is the server's cap where one applies) and whether this checkpoint can run it
    (its calibration, and its kind: a vae, ae or ebm lacks G or D)."""
    out: list[dict[str, Any]] = []
    for spec in METHODS.values():
        entry = spec.describe()
        for option in entry["options"]:
            cap_setting = option.get("cap_setting")
            if cap_setting is not None:
                cap: int = getattr(settings, cap_setting.removeprefix("GAN_").lower())
                option["maximum"] = min(option.get("maximum", cap), cap)
        refusal = kind_refusal(kind, spec.name)
        available = refusal is None and (calibrated or not spec.needs_calibration)
        entry["available"] = available
        if refusal is not None:
            entry["unavailable_reason"] = refusal
        elif not available:
            entry["unavailable_reason"] = (
                "needs a calibrated discriminator: run gan-calibrate --checkpoint DIR on the "
                "checkpoint and restart the server"
            )
        out.append(entry)
    return out


@router.get(
    "/info",
    response_model=InfoResponse,
    **protected(),
    summary="Model, training record, limits and preprocessing",
    description="Everything a client needs to call /generate and /score: z_dim, resolution, "
    "channels, limits, the image preprocessing, the truncation mode, the sampling methods with "
    "their options and caps (generate.methods) and D's calibration, for the default model or "
    "`?model=NAME` (GET /models). Needs the API key when the server has one. Example: `curl -s http://127.0.0.1:8000/info`.",
    responses={401: {"model": ErrorResponse, "description": "API key missing or wrong"}},
)
async def info(settings: SettingsDep, request: Request, model: str | None = None) -> InfoResponse:
    slot = slot_of(request, model)
    engine = slot.engine
    cfg = engine.config
    rs = cfg.real_scores
    calibration = engine.calibration
    declared = engine.model_kind
    return InfoResponse(
        model=ModelRef.model_validate(engine.info.as_dict()),
        model_name=slot.name,
        models=registry_of(request).names,
        kind=declared.name,
        capabilities=declared.capabilities(),
        architecture=engine.model_config.to_dict(),
        z_dim=engine.z_dim,
        resolution=engine.resolution,
        channels=engine.channels,
        device=engine.device,
        dataset=portable_dataset_info(cfg.dataset),  # not the trainer's paths (old checkpoints)
        metrics=cfg.metrics,
        training=cfg.training,
        created_at=cfg.created_at,
        classes=list(cfg.classes),
        normalisation=cfg.normalisation,
        real_scores=None
        if rs is None
        else PercentileReference(num_images=rs.num_images, source=rs.source, levels=len(rs.levels)),
        calibration=None if calibration is None else calibration.summary(),
        refit=None if cfg.refit is None else cfg.refit.raw,
        limits={
            "max_images": settings.max_images,
            "max_body_bytes": settings.max_body_bytes,
            "max_generate_body_bytes": request.app.state.body_limits("/generate").max_bytes,
            "max_image_pixels": settings.max_image_pixels,
            "body_timeout_s": settings.body_timeout_s,
            "body_deadline_s": settings.body_deadline_s,
            "seed_range": [0, SEED_LIMIT - 1],
            "truncation_range": [TRUNCATION_MIN, TRUNCATION_MAX],
            "max_proposals": settings.max_proposals,
            "max_langevin_steps": settings.max_langevin_steps,
            "max_ascent_steps": settings.max_ascent_steps,
            "max_project_steps": settings.max_project_steps,
            "max_project_restarts": settings.max_project_restarts,
        },
        preprocessing=preprocessing_report(
            engine.resolution, engine.channels, settings.max_image_pixels
        ),
        generate={
            "formats": list(FORMAT_NAMES),
            "animated_formats": list(ANIMATED_FORMATS),
            "seed_derivation": "image i of a request with seed S uses seed (S + i) mod 2**53",
            "latent": "torch.randn(z_dim) from torch.Generator('cpu').manual_seed(seed), float32",
            "truncation_mode": TRUNCATION_MODE,
            "interpolation": "slerp",
            "class_interpolation": "linear mix of the class embeddings of from_label and "
            "to_label (conditional models)",
            "calibrated": calibration is not None,
            "methods": methods_info(settings, calibration is not None, engine.kind),
            "plain": plain_description(declared),
            "ebm_search": None if cfg.ebm is None else cfg.ebm.to_config(),
            "method_seeds": "proposal k of image seed s has the latent of a seed derived from "
            "(s, k), proposal 0 being s itself; each image's acceptance draws and noise come "
            "from its own generator seeded from (s, method): a seed, label, method and options "
            "give the same image in any request",
        },
        project=project_info(engine, settings),
        auth={"api_key_required": settings.api_key is not None},
    )


def project_info(engine: InferenceEngine, settings: Settings) -> dict[str, Any] | None:
    """``project``: how POST /project works on this checkpoint (None: it cannot project)."""
    from gan.projection import ProjectOptions

    declared = engine.model_kind
    if declared.projection == "none" or not declared.has_generator:
        return None
    d = ProjectOptions()
    recorded = engine.config.raw.get("encoder")
    return {
        "encoder": engine.encoder is not None,
        "encoder_training": recorded if isinstance(recorded, dict) else None,
        "distance": engine.projection_distance,
        "steps": {
            "default": min(d.steps, settings.max_project_steps),
            "max": settings.max_project_steps,
        },
        "restarts": {
            "default": min(d.restarts, settings.max_project_restarts),
            "max": settings.max_project_restarts,
        },
        "candidate_classes": (
            d.classes if engine.encoder is not None else len(engine.config.classes)
        )
        if engine.config.classes
        else None,
    }
