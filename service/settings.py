"""Service configuration: environment variables with the prefix ``GAN_`` (pydantic-settings).

Every field below is read from ``GAN_<FIELD NAME>`` (case-insensitive), e.g. ``GAN_CHECKPOINT``,
``GAN_PORT``, ``GAN_API_KEY``. ``gan-serve --checkpoint/--host/--port`` override the environment.
docs/api.md has the same table for users; keep the two in step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# PIL refuses images above 2 x Image.MAX_IMAGE_PIXELS (89,478,485 by default) no matter what we
# allow, and warns above 1 x; the service's own limit stays at or below PIL's default.
PIL_DEFAULT_MAX_IMAGE_PIXELS = 89_478_485

LogLevel = Literal["debug", "info", "warning", "error", "critical"]


def default_checkpoint_dir() -> Path:
    """The bundled MNIST checkpoint: ``<repo>/checkpoints/mnist`` beside the ``service`` package."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "mnist"


#: A served model's name: what requests give as ``model`` (and the metrics' ``model_name``).
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the service: its name and the checkpoint (or run folder) path."""

    name: str
    path: Path


def parse_model_specs(entries: list[str]) -> list[ModelSpec]:
    """``NAME=PATH`` or a bare ``PATH`` (named after its folder; a run folder's or a
    ``checkpoints/best``-style path's run name) each; ValueError on a bad name."""
    specs = []
    for entry in entries:
        name, sep, path = entry.partition("=")
        if not sep:
            path = entry
            folder = Path(path.rstrip("/"))
            parts = folder.parts
            run_checkpoint = folder.name in ("best", "latest") or folder.name.startswith("step-")
            if (
                len(parts) >= 3 and parts[-2] == "checkpoints" and run_checkpoint
            ):  # RUN/checkpoints/best
                name = parts[-3]
            else:
                name = folder.name or "default"
        name = name.strip()
        if not MODEL_NAME.match(name):
            raise ValueError(
                f"model name {name!r} (from {entry!r}) must be 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit"
            )
        if not path.strip():
            raise ValueError(f"{entry!r} names no checkpoint path (give NAME=PATH)")
        specs.append(ModelSpec(name, Path(path.strip())))
    return specs


class Settings(BaseSettings):
    """All run-time options of the service (see docs/api.md for the user-facing table)."""

    model_config = SettingsConfigDict(
        env_prefix="GAN_", case_sensitive=False, extra="ignore", validate_default=True
    )

    checkpoint: Path = Field(
        default_factory=default_checkpoint_dir,
        description="Checkpoint directory to serve (config.json + generator/discriminator weights).",
    )
    checkpoints: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Several models in one service: comma-separated NAME=PATH (or a bare PATH, "
        "named after its folder); the first is the default, the one every request that names "
        "no model gets. Set, it replaces GAN_CHECKPOINT.",
    )
    watch_s: float = Field(
        default=0.0,
        ge=0,
        le=86400,
        description="Poll every model's path this often (seconds) and reload a model when a "
        "new, complete checkpoint is there (0: off; POST /models/NAME/reload reloads on "
        "demand).",
    )
    host: str = Field(default="127.0.0.1", min_length=1, description="Interface to bind.")
    port: int = Field(
        default=8000, ge=0, le=65535, description="TCP port to bind (0: any free port)."
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes; each loads its own copy of the models.",
    )
    http: Literal["auto", "httptools", "h11"] = Field(
        default="auto",
        description="HTTP/1.1 parser of uvicorn: auto picks httptools (C, installed with the "
        "service) and falls back to h11 (pure Python) where it is missing.",
    )
    loop: Literal["auto", "uvloop", "asyncio"] = Field(
        default="auto",
        description="Event loop: auto picks uvloop (installed with the service on Linux and "
        "macOS) and falls back to asyncio's own loop.",
    )
    device: str = Field(
        default="cpu",
        min_length=1,
        description="torch device for inference, e.g. cpu, cuda, cuda:1.",
    )
    engine: Literal["torch", "onnxruntime"] = Field(
        default="torch",
        description="What runs plain G and D forwards (/generate, /score, drs and mh): torch, "
        "or onnxruntime (needs pip install gan-serve[onnx]; CPU only), with G and D exported to "
        "ONNX in memory at start-up. Gradient work (langevin, pixel_ascent, an ebm's sampling, "
        "/project) stays on torch.",
    )
    torch_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="torch intra-op threads per worker (onnxruntime's too with "
        "GAN_ENGINE=onnxruntime); 0 keeps torch's default (one per core). "
        "1 leaves the other cores to HTTP, decoding and PNG encoding: on 2 cores it served more "
        "requests per second than 2, for the bundled model and a 4x wider one "
        "(docs/benchmarks.md).",
    )
    torch_interop_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="torch inter-op threads per worker; 0 keeps torch's default. Forward passes "
        "run one at a time on one thread, so inter-op parallelism has nothing to do.",
    )
    max_batch: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Most images in one batched forward pass; larger requests are split into "
        "chunks of this size. 1 turns batching off.",
    )
    max_delay_ms: float = Field(
        default=2.0,
        ge=0,
        le=10_000,
        description="Longest an idle batch worker waits for more images while other requests "
        "are on their way (being read or decoded); a lone request starts at once.",
    )
    queue_size: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Most /generate and /score requests in the server at once once their body "
        "has arrived (decoded, queued or run; reading a body takes no slot); more: 503 with "
        "Retry-After, at once.",
    )
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest a request waits for the model (queued plus its forward passes); "
        "longer: 504 and its queued work is dropped.",
    )
    metrics_enabled: bool = Field(
        default=True,
        description="Serve Prometheus metrics at GET /metrics (open even with GAN_API_KEY).",
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body in bytes (counted while it is read); larger: 413.",
    )
    max_header_bytes: int = Field(
        default=16 * 1024,
        ge=1024,
        le=1024 * 1024,
        description="Largest request head (request line and headers) in bytes; larger: 431, "
        "as nginx and h11 refuse at 8-16 KB.",
    )
    max_generate_body_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest /generate body in bytes (at most GAN_MAX_BODY_BYTES); larger: 413. "
        "Unset: sized from the model, GAN_MAX_IMAGES rows of z_dim numbers at 32 bytes each plus "
        "64 KiB (192 KiB for the bundled model).",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest wait for the next chunk of a request body; longer: 408.",
    )
    body_deadline_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Longest time to receive a whole request body, however it trickles in; "
        "longer: 408.",
    )
    body_buffer_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024 * 1024,
        description="Most bytes of /generate and /score bodies held while they are being "
        "received, all requests of a worker process together (at least GAN_MAX_BODY_BYTES); a "
        "chunk beyond: 503 with Retry-After. Bodies that trickle in slowly hold almost none of "
        "it.",
    )
    max_images: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Most images per request: /generate n, rows of z, interpolation steps, /score files.",
    )
    max_proposals: int = Field(
        default=64,
        ge=1,
        le=10_000,
        description="Most proposals of G per image for the drs (max_proposals) and mh "
        "(proposals) sampling methods; more: 422.",
    )
    max_langevin_steps: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Most steps per image for the langevin sampling method (a forward and a "
        "backward pass through G and D each), and for an ebm checkpoint's Langevin search (a "
        "forward and a backward pass through D each; its steps are in its config.json); more: "
        "422.",
    )
    max_ascent_steps: int = Field(
        default=200,
        ge=1,
        le=10_000,
        description="Most steps per image for the pixel_ascent sampling method (a forward and "
        "a backward pass through D each); more: 422.",
    )
    max_project_steps: int = Field(
        default=500,
        ge=0,
        le=5000,
        description="Most Adam steps of one POST /project (each a forward and a backward pass "
        "through G and D for every restart and candidate class); more: 422.",
    )
    max_project_restarts: int = Field(
        default=8,
        ge=1,
        le=16,
        description="Most restarts of one POST /project; more: 422.",
    )
    max_image_pixels: int = Field(
        default=4_194_304,
        ge=1,
        le=PIL_DEFAULT_MAX_IMAGE_PIXELS,
        description="Largest uploaded image (width x height, read from its header before decoding).",
    )
    log_level: LogLevel = Field(default="info", description="Log level of the JSON logs on stderr.")
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, /generate, /score and /info need 'Authorization: Bearer <key>'.",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed by CORS (comma-separated or a JSON list); empty: CORS off.",
    )
    graceful_shutdown_s: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="On SIGTERM, how long in-flight requests may take to finish.",
    )

    @field_validator("body_buffer_bytes")
    @classmethod
    def _buffer_holds_a_body(cls, value: int, info: ValidationInfo) -> int:
        largest = info.data.get("max_body_bytes")
        if isinstance(largest, int) and value < largest:
            raise ValueError(
                f"must be at least GAN_MAX_BODY_BYTES ({largest}), or a body of that size could "
                "never be received"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("api_key", "max_generate_body_bytes", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("api_key")
    @classmethod
    def _printable_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            key = value.get_secret_value()
            if not key.isascii() or not key.isprintable() or " " in key:
                raise ValueError("must be printable ASCII without spaces (it travels in a header)")
        return value

    @field_validator("checkpoints", mode="before")
    @classmethod
    def _split_checkpoints(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("checkpoints")
    @classmethod
    def _check_checkpoints(cls, value: list[str]) -> list[str]:
        names = [spec.name for spec in parse_model_specs(value)]  # raises on a bad name
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(
                f"model names must differ: {', '.join(duplicates)} twice (give NAME=PATH)"
            )
        return value

    def model_specs(self) -> list[ModelSpec]:
        """The models to serve, the default first: GAN_CHECKPOINTS, else GAN_CHECKPOINT."""
        return parse_model_specs(self.checkpoints or [str(self.checkpoint)])

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                try:
                    return json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a valid JSON list ({exc.msg})") from exc
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise ValueError(
                    f"origin {origin!r} must start with http:// or https:// (or be '*')"
                )
        return [o.rstrip("/") for o in value]
