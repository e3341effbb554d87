"""POST /project: an uploaded image -> the latent (and class) whose G(z) draws it."""

from __future__ import annotations

import base64
import functools
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile
from starlette.responses import Response

from gan.errors import UserError
from gan.io import encode_pngs
from gan.projection import ProjectionError, ProjectOptions
from service.batching import GRADIENT
from service.deps import engine_of, protected
from service.inference import sigmoid
from service.routes import ModelEndpoint
from service.routes.score import Upload, decode_inline, prepare, preprocessing_report
from service.schemas import DiscriminatorView, ErrorResponse, ModelRef, ProjectResponse

router = APIRouter(tags=["project"])

ENDPOINTS = (ModelEndpoint("/project", GRADIENT, {"X-Model-Id": {"schema": {"type": "string"}}}),)

FIELD = "file"
#: Form fields (or query parameters) besides the file.
PARAMS = ("label", "steps", "restarts", "seed", "model")
JSON = "application/json"


def _invalid(loc: list[str | int], msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


def _int_param(
    params: dict[str, str], name: str, default: int, low: int, high: int, cap: str | None = None
) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid(["body", name], f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        where = f" ({cap})" if cap else ""
        raise _invalid(
            ["body", name], f"{name} is {value}, it must lie in {low}..{high}{where}", "range"
        )
    return value


async def _read(request: Request) -> tuple[Upload, dict[str, str]]:
    """The uploaded image and the other fields (form fields, else query parameters)."""
    params = {k: v for k, v in request.query_params.items() if k in PARAMS}
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=2, max_fields=len(PARAMS) + 2)
        except Exception as exc:
            raise HTTPException(
                400,
                f"malformed multipart/form-data body ({exc}); send one image as form field "
                f"'{FIELD}' (curl -F file=@digit.png)",
            ) from exc
        try:
            files = form.getlist(FIELD)
            if len(files) != 1 or not isinstance(files[0], UploadFile):
                found = sorted(set(form.keys()))
                raise _invalid(
                    ["body", FIELD],
                    f"send exactly one image as the file field '{FIELD}' (curl -F "
                    f"file=@digit.png); fields received: {found}",
                    "missing",
                )
            for key in PARAMS:
                value = form.get(key)
                if isinstance(value, str):
                    params[key] = value
            upload = Upload(0, files[0].filename, await files[0].read())
        finally:
            await form.close()
        return upload, params
    if media.startswith("image/") or media == "application/octet-stream":
        return Upload(0, None, await request.body()), params
    raise HTTPException(
        415,
        f"unsupported Content-Type {media or 'none'!r}: upload the image as multipart/form-data "
        f"field '{FIELD}', or as the raw body with an image content type",
    )


PROJECT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FIELD],
                "properties": {
                    FIELD: {"type": "string", "format": "binary"},
                    "label": {
                        "type": "string",
                        "description": "Class index or name (conditional models). Left out: "
                        "the class is searched.",
                    },
                    "steps": {"type": "integer", "description": "Adam steps on z."},
                    "restarts": {"type": "integer", "description": "Starts per class."},
                    "seed": {"type": "integer", "description": "Seed of the random restarts."},
                    "model": {
                        "type": "string",
                        "description": "Which served model (GET /models); left out: the default.",
                    },
                },
            }
        },
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    "/project",
    response_model=ProjectResponse,
    summary="Project an image into the model's latent space",
    description="The upload is decoded and converted exactly as /score does, then projected "
    "(gan/projection.py): the checkpoint's encoder guesses a start where it has one, and "
    "`steps` of Adam over z minimise pixel MSE (the perceptual distance in D's own feature "
    "maps is reported beside it), `restarts` starts per candidate class in one batch. A conditional model without "
    "`label` is projected under its likely classes (the encoder's top 3, or every class) and "
    'the best is kept. `POST /generate {"z": [z], "label": label}` returns exactly the '
    "bytes of `image`. Fields may also come as query parameters with a raw image body. "
    "Example: `curl -s -F file=@digit.png http://127.0.0.1:8000/project`.",
    **protected(requestBody=PROJECT_REQUEST_BODY),
    responses={
        200: {"headers": ENDPOINTS[0].headers},
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
        413: {"model": ErrorResponse, "description": "Body larger than GAN_MAX_BODY_BYTES"},
        415: {"model": ErrorResponse, "description": "Neither multipart nor an image body"},
        422: {
            "model": ErrorResponse,
            "description": "The image was refused, an option is out of range, or this "
            "model kind cannot project",
        },
    },
)
async def project_image(request: Request) -> Response:
    import torch

    from gan.sampling import LabelError, resolve_label

    settings = request.app.state.settings
    upload, params = await _read(request)
    engine = engine_of(request, params.get("model") or None)
    declared = engine.model_kind
    if declared.projection == "none" or not declared.has_generator:
        raise _invalid(
            ["body"],
            f"this checkpoint is {declared.what()}: it has no generator whose latent an image "
            "could be projected to; serve a gan, vae or ae checkpoint for /project (GET /info "
            "'capabilities')",
            "kind_unsupported",
        )
    classes = engine.config.classes
    with engine.arriving(GRADIENT) as arrival:
        label: int | None = None
        if params.get("label") not in (None, ""):
            if not classes:
                raise _invalid(["body", "label"], "this model is unconditional: leave label out")
            try:
                label = resolve_label(params["label"], classes)
            except LabelError as exc:
                raise _invalid(["body", "label"], str(exc)) from exc
        default = ProjectOptions()
        steps = _int_param(
            params,
            "steps",
            min(default.steps, settings.max_project_steps),
            0,
            settings.max_project_steps,
            "GAN_MAX_PROJECT_STEPS",
        )
        restarts = _int_param(
            params,
            "restarts",
            min(default.restarts, settings.max_project_restarts),
            1,
            settings.max_project_restarts,
            "GAN_MAX_PROJECT_RESTARTS",
        )
        seed = _int_param(params, "seed", 0, 0, 2**53 - 1)
        try:
            options = ProjectOptions(steps=steps, restarts=restarts, seed=seed)
        except ProjectionError as exc:
            raise _invalid(["body"], str(exc)) from exc
        convert = functools.partial(
            prepare,
            [upload],
            upload.filename is None,
            resolution=engine.resolution,
            channels=engine.channels,
            max_pixels=settings.max_image_pixels,
            field=None,
        )
        if decode_inline([upload]):
            prepared = convert()
        else:
            prepared = await anyio.to_thread.run_sync(
                convert, limiter=request.app.state.image_limiter
            )
        target = torch.from_numpy(prepared[0].pixels.copy()).unsqueeze(0)  # uint8 [1, C, R, R]
        try:
            (result,) = await engine.project(target, [label], options, arrival=arrival)
        except UserError as exc:
            raise _invalid(["body"], str(exc)) from exc
    views = {"upload": DiscriminatorView(logit=None, probability=None, realness_percentile=None)}
    views["reconstruction"] = views["upload"]
    if engine.has_discriminator:
        pair = torch.cat([target, result.image.unsqueeze(0)])
        y = None if result.label is None else torch.full((2,), result.label, dtype=torch.int64)
        logits = (await engine.score(pair, y)).tolist()
        rs = engine.real_scores
        for key, logit in zip(("upload", "reconstruction"), logits, strict=True):
            views[key] = DiscriminatorView(
                logit=logit,
                probability=sigmoid(logit),
                realness_percentile=None if rs is None else rs.percentile(logit),
            )
    (png,) = encode_pngs(result.image.unsqueeze(0))
    body = ProjectResponse(
        model=ModelRef.model_validate(engine.info.as_dict()),
        z=result.z,
        label=result.label,
        class_name=None if result.label is None else classes[result.label],
        candidates=result.candidates,
        mse=result.mse,
        distance=result.distance,
        distance_name=engine.projection_distance,
        image=base64.b64encode(png).decode("ascii"),
        start=result.start,
        steps=result.steps,
        restarts=result.restarts,
        seed=seed,
        seconds=result.seconds,
        upload=views["upload"],
        reconstruction=views["reconstruction"],
        preprocessing=preprocessing_report(
            engine.resolution, engine.channels, settings.max_image_pixels
        ),
    )
    return Response(body.model_dump_json(), media_type=JSON, headers=engine.info.headers())
