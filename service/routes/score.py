"""POST /score: the discriminator's opinion of uploaded images."""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from gan.kinds import kinds_with
from gan.preprocess import (
    ALLOWED_DESCRIPTION,
    ALLOWED_FORMATS,
    ImageDecodeError,
    decode_image,
    preprocess_description,
    to_model_pixels,
)
from service.batching import DISCRIMINATOR
from service.deps import engine_of, protected
from service.inference import sigmoid
from service.routes import ModelEndpoint
from service.schemas import (
    ErrorResponse,
    ModelRef,
    PercentileReference,
    ScoredImage,
    ScoreResponse,
)

router = APIRouter(tags=["score"])

#: The model route of this module (service.app derives admission and metrics from it).
ENDPOINTS = (
    ModelEndpoint("/score", DISCRIMINATOR, {"X-Model-Id": {"schema": {"type": "string"}}}),
)

# Uploads this small are decoded on the event loop: decoding and converting a 28x28 PNG takes
# ~50 us (measured), less than a hop to a worker thread and back, and at most 64 of them keep
# the loop busy for a few milliseconds. Anything else (larger, or not PNG) is decoded in a
# worker thread, at most IMAGE_CONVERSION_THREADS at a time. The header's pixel count alone is
# not enough: Pillow parses every chunk of a PNG in Python (~2.7 us per chunk, measured), so a
# 28x28 PNG padded with 600,000 empty chunks (9 MB) took a second on the loop. The byte caps
# bound that to ~15 ms per request (64 KiB of 12-byte chunks); a 64x64 RGBA PNG of noise is
# ~16.5 kB and 64 MNIST digits ~30 kB, so ordinary small uploads stay inline.
INLINE_MAX_PIXELS = 64 * 64
INLINE_MAX_BYTES = 20_000  # per upload
INLINE_MAX_TOTAL_BYTES = 64 * 1024  # all uploads of a request together

FIELD = "files"
JSON = "application/json"
_RAW_TYPES_HINT = "image/png, image/jpeg, image/webp, image/bmp, image/gif"


@dataclass
class Upload:
    index: int
    filename: str | None
    data: bytes


@dataclass
class Prepared:
    upload: Upload
    format: str
    width: int
    height: int
    mode: str
    frames: int
    pixels: np.ndarray  # uint8 [C, R, R]


def preprocessing_report(resolution: int, channels: int, max_pixels: int) -> dict[str, Any]:
    """gan.preprocess's description, plus what the service accepts before it."""
    report = preprocess_description(resolution, channels)
    report["max_pixels"] = max_pixels  # the service's own limit (GAN_MAX_IMAGE_PIXELS) applies
    report["accepted_formats"] = list(ALLOWED_FORMATS)
    report["format_detection"] = "from the file's bytes; file name and content type are ignored"
    report["animated_images"] = "first frame only"
    return report


def _image_error(
    index: int, upload: Upload | None, message: str, raw: bool, field: str | None = FIELD
) -> RequestValidationError:
    """A refused upload; ``field=None``: a single-file field (``file`` of /project)."""
    single = field is None
    name = f" ({upload.filename!r})" if upload is not None and upload.filename else ""
    if raw:
        loc: list[str | int] = ["body"]
        where = "the request body"
    elif single:
        loc, where = ["body", "file"], f"file{name}"
    else:
        loc, where = ["body", str(field), index], f"{field}[{index}]{name}"
    return RequestValidationError(
        [{"loc": loc, "msg": f"{where}: {message}", "type": "image_rejected"}]
    )


async def read_uploads(request: Request, max_images: int) -> tuple[list[Upload], bool]:
    """The uploaded files, and whether they came as one raw body (vs multipart)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        try:
            form = await request.form(max_files=max_images + 1, max_fields=max_images + 16)
        except StarletteHTTPException as exc:
            if exc.status_code == 400 and "Too many files" in str(exc.detail):
                raise _too_many(max_images) from exc
            raise
        except Exception as exc:  # python-multipart's errors on malformed bodies
            raise HTTPException(
                400,
                f"malformed multipart/form-data body ({exc}); send the images as form field '{FIELD}'",
            ) from exc
        try:
            items = form.getlist(FIELD)
            if not items:
                found = sorted(set(form.keys()))
                raise RequestValidationError(
                    [
                        {
                            "loc": ["body", FIELD],
                            "msg": f"no images: send them as multipart form field '{FIELD}' "
                            f"(fields received: {found})",
                            "type": "missing",
                        }
                    ]
                )
            uploads: list[Upload] = []
            for i, item in enumerate(items):
                if not isinstance(item, UploadFile):
                    raise RequestValidationError(
                        [
                            {
                                "loc": ["body", FIELD, i],
                                "msg": f"{FIELD}[{i}] is a text field, not a file upload; send "
                                "the image as a file part (curl: -F 'files=@digit.png')",
                                "type": "not_a_file",
                            }
                        ]
                    )
                uploads.append(Upload(i, item.filename, await item.read()))
            if len(uploads) > max_images:
                raise _too_many(max_images)
            return uploads, False
        finally:
            await form.close()
    if media.startswith("image/") or media == "application/octet-stream":
        return [Upload(0, None, await request.body())], True
    shown = media or "none"
    raise HTTPException(
        415,
        f"unsupported Content-Type {shown!r}: upload images as multipart/form-data field "
        f"'{FIELD}', or one image as the raw body with an image content type "
        f"({_RAW_TYPES_HINT})",
    )


def _png_pixels(data: bytes) -> int | None:
    """Width x height from a PNG's IHDR chunk, without decoding (None: not a PNG)."""
    if len(data) >= 24 and data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width) * int(height)
    return None


def decode_inline(uploads: list[Upload]) -> bool:
    """Whether every upload is a PNG small enough, in pixels and in bytes, to decode on the
    event loop."""
    if sum(len(up.data) for up in uploads) > INLINE_MAX_TOTAL_BYTES:
        return False
    for up in uploads:
        pixels = _png_pixels(up.data)
        if pixels is None or pixels > INLINE_MAX_PIXELS or len(up.data) > INLINE_MAX_BYTES:
            return False
    return True


#: Conditional models scored without a label pair every image with every class; beyond this
#: many classes that is too much work per image, and a label is required.
MAX_CLASSES_WITHOUT_LABEL = 100


def score_label(value: str | None, classes: tuple[str, ...]) -> int | None:
    """The ``?label=`` query parameter as a class index (None: not given); 422 if unusable."""
    from gan.sampling import LabelError, resolve_label

    loc: list[str | int] = ["query", "label"]
    if value is None:
        if len(classes) > MAX_CLASSES_WITHOUT_LABEL:
            raise RequestValidationError(
                [
                    {
                        "loc": loc,
                        "type": "missing",
                        "msg": (
                            f"this model has {len(classes)} classes, too many to score each image against "
                            "all of them: give ?label=<class index or name>"
                        ),
                    }
                ]
            )
        return None
    try:
        return resolve_label(value, classes)
    except LabelError as exc:
        raise RequestValidationError(
            [{"loc": loc, "msg": str(exc), "type": "value_error"}]
        ) from exc


def _too_many(max_images: int) -> RequestValidationError:
    return RequestValidationError(
        [
            {
                "loc": ["body", FIELD],
                "msg": f"more than {max_images} images in one request (GAN_MAX_IMAGES); split them",
                "type": "too_many_images",
            }
        ]
    )


def prepare(
    uploads: list[Upload],
    raw: bool,
    *,
    resolution: int,
    channels: int,
    max_pixels: int,
    field: str | None = FIELD,
) -> list[Prepared]:
    """Decode and convert every upload (runs in a worker thread: it is CPU work); errors name
    ``field`` (None: the single ``file`` field of /project)."""
    out: list[Prepared] = []
    for up in uploads:
        try:
            decoded = decode_image(up.data, max_pixels=max_pixels)
        except ImageDecodeError as exc:
            raise _image_error(up.index, up, str(exc), raw, field) from exc
        try:
            pixels = to_model_pixels(decoded.image, resolution, channels)
        except ImageDecodeError as exc:
            raise _image_error(up.index, up, str(exc), raw, field) from exc
        except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
            raise _image_error(
                up.index,
                up,
                f"cannot convert this {decoded.format} image (mode {decoded.mode}): {exc}; "
                f"re-save it as an 8-bit {ALLOWED_DESCRIPTION}",
                raw,
                field,
            ) from exc
        finally:
            decoded.image.close()
        out.append(
            Prepared(
                up,
                decoded.format,
                decoded.width,
                decoded.height,
                decoded.mode,
                decoded.frames,
                pixels,
            )
        )
    return out


SCORE_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "description": "Either multipart/form-data with one or more image files in the field "
    f"'{FIELD}', or one image as the raw body with an image Content-Type. Accepted: "
    f"{ALLOWED_DESCRIPTION}, detected from the bytes.",
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": [FIELD],
                "properties": {
                    FIELD: {"type": "array", "items": {"type": "string", "format": "binary"}}
                },
            },
            "examples": {
                "two_files": {
                    "summary": "Two files (curl -F files=@a.png -F files=@b.jpg)",
                    "value": {FIELD: ["a.png", "b.jpg"]},
                }
            },
        },
        "image/png": {
            "schema": {"type": "string", "format": "binary"},
            "examples": {
                "raw_body": {
                    "summary": "One image as the body (curl --data-binary @digit.png -H "
                    "'Content-Type: image/png')",
                    "value": "<PNG bytes>",
                }
            },
        },
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    },
}


@router.post(
    "/score",
    response_model=ScoreResponse,
    summary="Score images with the discriminator",
    description="Each image is decoded (format detected from its bytes), converted to the "
    "model's channels and resolution exactly as the training data was "
    "(gan.preprocess.to_model_pixels, described in the response), and all images of the "
    "request go through D in batched forward passes (shared with concurrent requests, at most "
    "GAN_MAX_BATCH images each; results do not depend on the batch). For each: D's logit, its sigmoid, the realness "
    "percentile (the share of held-out real images that D scored lower) and, when the "
    "checkpoint has a calibration, the calibrated probability that the image came from the "
    "training data rather than from this G. For a class-conditional "
    "model, ?label= picks the class to score; without it each image is scored with every class "
    "(class_logits) and, where the checkpoint has an encoder, as the class the encoder reads "
    "(D is no classifier). Example: "
    "`curl -s -F files=@digit.png http://127.0.0.1:8000/score`.",
    **protected(
        requestBody=SCORE_REQUEST_BODY,
        parameters=[
            {
                "name": "label",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "Class-conditional models only: score each image as this class "
                "(index or name, see GET /info 'classes'). Left out: D scores each image paired "
                "with every class (class_logits), and the image is scored as the class the "
                "checkpoint's encoder reads; without an encoder no class is reported.",
            },
            {
                "name": "model",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "Which served model (GET /models); left out: the default.",
            },
        ],
    ),
    responses={
        200: {"headers": ENDPOINTS[0].headers},
        401: {"model": ErrorResponse, "description": "API key missing or wrong"},
        413: {"model": ErrorResponse, "description": "Body larger than GAN_MAX_BODY_BYTES"},
        415: {"model": ErrorResponse, "description": "Neither multipart nor an image body"},
        422: {
            "model": ErrorResponse,
            "description": "An image was refused (the message names it and says why)",
            "content": {
                "application/json": {
                    "example": {
                        "detail": [
                            {
                                "loc": ["body", FIELD, 0],
                                "msg": "files[0] ('scan.png'): the PNG data is corrupt or "
                                "truncated (image file is truncated); send a complete PNG file",
                                "type": "image_rejected",
                            }
                        ]
                    }
                }
            },
        },
    },
)
async def score(request: Request) -> Response:
    import torch

    model = request.query_params.get("model") or None
    engine, settings = engine_of(request, model), request.app.state.settings
    if not engine.model_kind.can_score:
        raise RequestValidationError(
            [
                {
                    "loc": ["body"],
                    "type": "kind_unsupported",
                    "msg": (
                        f"this checkpoint is a {engine.kind} (an auto-encoder: a decoder alone, no "
                        "discriminator), so there is no D to score images with; serve a "
                        f"{' or '.join(kinds_with('discriminator'))} checkpoint for /score (GET "
                        "/info 'kind')"
                    ),
                }
            ]
        )
    classes = engine.config.classes
    label = score_label(request.query_params.get("label"), classes)

    with engine.arriving(DISCRIMINATOR) as arrival:
        uploads, raw = await read_uploads(request, settings.max_images)
        convert = functools.partial(
            prepare,
            uploads,
            raw,
            resolution=engine.resolution,
            channels=engine.channels,
            max_pixels=settings.max_image_pixels,
        )
        if decode_inline(uploads):
            prepared = convert()
        else:
            limiter = request.app.state.image_limiter
            prepared = await anyio.to_thread.run_sync(convert, limiter=limiter)
        batch = torch.from_numpy(np.stack([p.pixels for p in prepared]))  # uint8 [B, C, R, R]
        per_class: list[list[float]] | None = None
        class_probs: list[float] | None = None
        if not classes:
            logits = (await engine.score(batch, arrival=arrival)).tolist()
            labels: list[int | None] = [None] * len(prepared)
        elif label is not None:
            y = torch.full((len(prepared),), label, dtype=torch.int64)
            logits = (await engine.score(batch, y, arrival=arrival)).tolist()
            labels = [label] * len(prepared)
        else:  # every image paired with every class: [B * K] rows, class fastest
            k = len(classes)
            y = torch.arange(k).repeat(len(prepared))
            table = await engine.score(batch.repeat_interleave(k, 0), y, arrival=arrival)
            per_class = table.view(len(prepared), k).tolist()
            if engine.can_classify:  # the encoder reads the class; D scores the pair
                probs = await engine.classify(batch)
                read = probs.argmax(1).tolist()
                class_probs = [float(probs[i, c]) for i, c in enumerate(read)]
                logits = [row[c] for row, c in zip(per_class, read, strict=True)]
                labels = list(read)
            else:  # D is no classifier: no class, its highest logit over the classes
                logits = [max(row) for row in per_class]
                labels = [None] * len(prepared)
    rs = engine.real_scores
    cal = engine.calibration
    notes: list[str] = []
    if rs is None:
        notes.append(
            "this checkpoint stores no real_scores (D's logits on held-out real images), so "
            "realness_percentile is null"
        )
    if per_class is not None and class_probs is None:
        notes.append(
            "no label was given and this checkpoint has no encoder to read the class with "
            "(gan-train-encoder adds one): D is no classifier, so no class is reported and "
            "logit is D's highest over the classes (class_logits has each); give ?label= to "
            "score an image as a class"
        )
    if cal is None:
        notes.append(
            "this checkpoint has no calibration of D (gan-calibrate adds one), so "
            "calibrated_probability is null"
        )
    results = [
        ScoredImage(
            index=p.upload.index,
            filename=p.upload.filename,
            format=p.format,
            width=p.width,
            height=p.height,
            mode=p.mode,
            frames=p.frames,
            logit=logit,
            probability=sigmoid(logit),
            calibrated_probability=None if cal is None else cal.probability(logit),
            realness_percentile=None if rs is None else rs.percentile(logit),
            label=c,
            class_name=None if c is None else classes[c],
            class_source=None if c is None else "request" if label is not None else "encoder",
            class_probability=None if class_probs is None else class_probs[i],
            class_logits=None if per_class is None else per_class[i],
        )
        for i, (p, logit, c) in enumerate(zip(prepared, logits, labels, strict=True))
    ]
    body = ScoreResponse(
        model=ModelRef.model_validate(engine.info.as_dict()),
        preprocessing=preprocessing_report(
            engine.resolution, engine.channels, settings.max_image_pixels
        ),
        percentile_reference=None
        if rs is None
        else PercentileReference(num_images=rs.num_images, source=rs.source, levels=len(rs.levels)),
        notes=notes,
        results=results,
    )
    # pydantic's own JSON encoder: much faster than model_dump() + json.dumps()
    return Response(body.model_dump_json(), media_type=JSON, headers=engine.info.headers())
