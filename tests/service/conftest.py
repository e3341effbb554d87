"""Fixtures for the service tests: tiny checkpoints built in tmp_path, apps and clients, and
the real ``gan-serve`` process (:class:`ServerProcess`, ``start_server``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import make_checkpoint as base_make_checkpoint

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0

# Levels 0, 0.001, ..., 1 with quantiles rising linearly from -4 to 4: percentile(x) is exact
# to check by hand (logit 0 -> 50 %).
REAL_SCORES: dict[str, Any] = {
    "levels": [i / 1000 for i in range(1001)],
    "quantiles": [-4.0 + 8.0 * i / 1000 for i in range(1001)],
    "num_images": 1000,
    "source": "synthetic test quantiles",
}


def make_checkpoint(path: Path, **options: Any) -> Path:
    """tests.conftest.make_checkpoint with the service tests' defaults: widths 4, step 123,
    dataset 'tiny', a metric and the synthetic REAL_SCORES."""
    defaults: dict[str, Any] = {
        "width": 4,
        "step": 123,
        "dataset": "tiny",
        "metrics": {"fid": 99.5},
        "real_scores": REAL_SCORES,
    }
    return base_make_checkpoint(path, **{**defaults, **options})


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def rgb_ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny-rgb", resolution=32, channels=3, real_scores=None
    )


@pytest.fixture(scope="session")
def cond_ckpt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny class-conditional checkpoint with three named classes."""
    return make_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "tiny-cond", classes=["zero", "one", "two"]
    )


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(ckpt_dir: Path) -> Iterator[ClientFactory]:
    """``make_client(**settings)``: a started TestClient (lifespan run) for these settings."""
    clients: list[TestClient] = []

    def factory(**overrides: Any) -> TestClient:
        overrides.setdefault("checkpoint", ckpt_dir)
        client = TestClient(create_app(Settings(**overrides)))
        client.__enter__()
        clients.append(client)
        return client

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read GAN_* variables: keep the caller's environment out of the tests."""
    import os

    for key in list(os.environ):
        if key.upper().startswith("GAN_"):
            monkeypatch.delenv(key)


class ServerProcess:
    """``python -m service.cli ...`` with its stderr collected line by line in a thread."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GAN_")}
        full_env.update({"GAN_TORCH_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "service.cli", *args],
            cwd=ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = STARTUP_TIMEOUT_S
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for rec in self.records():
                    if pred(rec):
                        return rec
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError("log line not seen; output:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.5))

    def wait_started(self) -> str:
        rec = self.wait_for(lambda r: "Uvicorn running on" in r.get("msg", ""))
        url = rec["msg"].split("Uvicorn running on ", 1)[1].split()[0]
        return url.rstrip("/")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def wait(self, timeout: float = STARTUP_TIMEOUT_S) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(list(args), env)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.kill()
