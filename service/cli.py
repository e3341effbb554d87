"""``gan-serve``: run the HTTP service with uvicorn.

Settings come from ``GAN_*`` environment variables (see :mod:`service.settings`); the options
below override them. A checkpoint that cannot be served ends the process with status 1 and one
line ``gan-serve: error: <file>: <problem>``; bad settings end it with status 2. SIGTERM or
Ctrl+C stop it gracefully: in-flight requests finish (up to GAN_GRACEFUL_SHUTDOWN_S), then it
exits with status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from service.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

PROG = "gan-serve"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Serve a GAN checkpoint over HTTP (POST /generate, POST /score, GET /info, "
        "/health, /ready; docs at /docs). Every option can also be set by its GAN_ environment "
        "variable, e.g. GAN_CHECKPOINT, GAN_PORT; see docs/api.md for the full list.",
    )
    p.add_argument(
        "--checkpoint",
        metavar="[NAME=]DIR",
        action="append",
        help="checkpoint directory or training run folder (GAN_CHECKPOINT); repeat as "
        "NAME=DIR to serve several models, the first the default (GAN_CHECKPOINTS)",
    )
    p.add_argument(
        "--watch",
        metavar="S",
        type=float,
        dest="watch_s",
        help="reload a model when a new checkpoint appears at its path, polling every S "
        "seconds (GAN_WATCH_S; default off)",
    )
    p.add_argument("--host", metavar="H", help="interface to bind (GAN_HOST, default 127.0.0.1)")
    p.add_argument("--port", metavar="P", type=int, help="TCP port (GAN_PORT, default 8000)")
    p.add_argument(
        "--workers", metavar="N", type=int, help="worker processes (GAN_WORKERS, default 1)"
    )
    p.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error", "critical"],
        help="log level (GAN_LOG_LEVEL, default info)",
    )
    return p


def _settings_error(exc: ValidationError, from_cli: set[str]) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err.get("loc") else "?"
        name = f"--{field.replace('_', '-')}" if field in from_cli else f"GAN_{field.upper()}"
        parts.append(f"{name}: {err['msg']}")
    return "; ".join(parts)


class _QuietStartupFailure(logging.Filter):
    """Drop uvicorn's own error lines once the app has a one-line start-up error to report."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno >= logging.ERROR and self.app.state.startup_error)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Placeholder handler: uvicorn handles SIGTERM/SIGINT while it runs and, after its
    graceful shutdown, raises the signal again for the previous handler; this one lets the
    process then exit normally with status 0 instead of dying from the signal."""


def _run_single(settings: Settings) -> int:
    import uvicorn

    from service.app import create_app
    from service.protocols import protocol_class

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        http=protocol_class(settings.http),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # service.protocols
        loop=settings.loop,
        log_config=None,
        access_log=False,  # service.middleware writes the JSON access log
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    server = uvicorn.Server(config)
    quiet = _QuietStartupFailure(app)
    logging.getLogger("uvicorn.error").addFilter(quiet)
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit:
        pass  # uvicorn exits this way when start-up fails; reported below
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logging.getLogger("uvicorn.error").removeFilter(quiet)
    if app.state.startup_error:
        print(f"{PROG}: error: {app.state.startup_error}", file=sys.stderr)
        return 1
    if not server.started:
        print(
            f"{PROG}: error: the server did not start on {settings.host}:{settings.port} "
            "(see the log line above)",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_workers(settings: Settings) -> int:
    import uvicorn

    from gan.runs import resolve_checkpoint
    from service.inference import InferenceEngine, StartupError
    from service.protocols import protocol_class

    # Workers that fail to start would be restarted forever: check every checkpoint once here.
    specs = settings.model_specs()
    for spec in specs:
        checkpoint, note = resolve_checkpoint(spec.path)
        if note:
            print(f"{PROG}: {note}", file=sys.stderr)
        try:
            InferenceEngine.load(
                checkpoint, device=settings.device, torch_threads=1, runtime=settings.engine
            ).close()
        except StartupError as exc:
            prefix = f"model {spec.name!r}: " if len(specs) > 1 else ""
            print(f"{PROG}: error: {prefix}{exc}", file=sys.stderr)
            return 1
    # Worker processes read their settings from the environment (each resolves the paths
    # itself, so that a reload in a worker reads the path again).
    os.environ["GAN_CHECKPOINTS"] = ",".join(f"{s.name}={s.path}" for s in specs)
    os.environ["GAN_LOG_LEVEL"] = settings.log_level
    os.environ["GAN_WATCH_S"] = str(settings.watch_s)
    uvicorn.run(
        "service.app:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        lifespan="on",
        http=protocol_class(settings.http),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # service.protocols
        loop=settings.loop,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    overrides: dict[str, Any] = {
        key: value for key, value in vars(args).items() if value is not None
    }
    given = overrides.pop("checkpoint", None)
    if given is not None:  # one bare DIR: GAN_CHECKPOINT's place; else the model list
        if len(given) == 1 and "=" not in given[0]:
            overrides["checkpoint"] = given[0]
            overrides["checkpoints"] = []
        else:
            overrides["checkpoints"] = given
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(
            f"{PROG}: error: invalid settings: {_settings_error(exc, set(overrides))}",
            file=sys.stderr,
        )
        return 2

    from service.logconfig import configure_logging

    configure_logging(settings.log_level)
    if settings.workers > 1:
        return _run_workers(settings)
    return _run_single(settings)


if __name__ == "__main__":
    sys.exit(main())
