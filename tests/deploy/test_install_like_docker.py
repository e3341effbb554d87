"""The Docker image's install and start steps, replayed outside Docker (no engine needed).

The builder stage's COPY and RUN instructions run here, in order and verbatim (``sh -c``), into a
fresh virtual environment (no system site-packages, so a dependency missing from pyproject.toml
fails here as it would in the image), with every package taken from a local wheel folder
(build argument ``WHEELS=all``, the air-gapped path). Then ``gan-serve`` starts the way the image's
CMD starts it, with the final stage's ENV (paths mapped into tmp_path; loopback and a free port
instead of 0.0.0.0:8000), and must answer /ready, /generate and the image's HEALTHCHECK command.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gan.checkpoint import build_config, save_checkpoint
from gan.models import ModelConfig, build_models
from tests.deploy.dockerfile import ROOT, Stage, copy_args, exec_form, healthcheck_command, stages

pytestmark = pytest.mark.slow

BUNDLED = ROOT / "checkpoints" / "mnist"
CLASSIFIER = ROOT / "checkpoints" / "mnist-classifier"


def offline_pip_env() -> dict[str, str]:
    """pip settings that resolve from this machine's local package sources only, if it has any.

    Where pip is configured with ``file://`` indexes (as on the project's machines), they become
    the only indexes, so the test never reaches for the network. Elsewhere pip's own configuration
    stays in force.
    """
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    urls: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.endswith(("index-url", "extra-index-url")):
            urls += [u for u in value.strip().strip("'\"").split() if u.startswith("file://")]
    if not urls:
        return {}
    return {"PIP_INDEX_URL": urls[0], "PIP_EXTRA_INDEX_URL": " ".join(urls[1:])}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def replay_builder(builder: Stage, venv: Path, src: Path, wheels: Path, log: Path) -> None:
    """Run the builder stage's COPY and RUN steps with its paths mapped to local folders."""
    args = builder.key_values("ARG") | {"WHEELS": "all"}
    env_values = builder.key_values("ENV")
    paths = {env_values["VENV"]: venv, env_values["WHEELS_DIR"]: wheels}
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env |= args | env_values | offline_pip_env()
    env |= {"VENV": str(venv), "WHEELS_DIR": str(wheels)}
    # `python` is the interpreter running the tests (the image's is python:3.11's).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    workdir: Path | None = None
    with open(log, "w") as fh:
        for ins in builder.instructions:
            if ins.keyword == "WORKDIR":
                paths[ins.value] = src
                workdir = src
                src.mkdir(parents=True, exist_ok=True)
            elif ins.keyword == "COPY":
                _, sources, dest = copy_args(ins)
                if not dest.startswith("/"):
                    target = (workdir or src) / dest
                elif dest.rstrip("/") in paths:
                    target = paths[dest.rstrip("/")]
                else:
                    pytest.fail(
                        f"Dockerfile line {ins.line}: map COPY destination {dest} in this test"
                    )
                if dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                for pattern in sources:
                    found_any = sorted(glob.glob(str(ROOT / pattern)))
                    if not found_any and not glob.has_magic(pattern):
                        pytest.fail(f"Dockerfile line {ins.line}: COPY source {pattern} is missing")
                    for found in found_any:
                        p = Path(found)
                        if p.is_dir():
                            shutil.copytree(
                                p,
                                target,
                                dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                            )
                        else:
                            shutil.copy2(p, target / p.name if dest.endswith("/") else target)
            elif ins.keyword == "RUN":
                fh.write(f"\n$ RUN (Dockerfile line {ins.line})\n")
                fh.flush()
                proc = subprocess.run(
                    ["/bin/sh", "-c", ins.value],
                    cwd=workdir,
                    env=env,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
                if proc.returncode != 0:
                    tail = log.read_text()[-4000:]
                    pytest.fail(f"Dockerfile line {ins.line} failed ({proc.returncode}):\n{tail}")
            elif ins.keyword not in ("ARG", "ENV"):
                pytest.fail(f"Dockerfile line {ins.line}: teach this test about {ins.keyword}")


def request(port: int, path: str, body: dict | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET ``path``, or POST ``body`` as JSON to it: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        if body is None:
            conn.request("GET", path)
        else:
            conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_image_install_and_start_steps_outside_docker(tmp_path: Path) -> None:
    assert sys.version_info[:2] == (3, 11), "the image runs Python 3.11; run this test on 3.11"
    builder, final = stages()
    assert builder.name == "builder"

    # The local wheel folder, filled by the same script users run for air-gapped builds.
    wheels = tmp_path / "wheels"
    fill = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-wheels.sh"), str(wheels)],
        env={**os.environ, **offline_pip_env(), "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    assert fill.returncode == 0, fill.stdout + fill.stderr
    assert list(wheels.glob("torch-2.13.0*.whl")), (
        "scripts/docker-wheels.sh fetched no torch 2.13.0"
    )

    venv = tmp_path / "venv"
    replay_builder(builder, venv, tmp_path / "src", wheels, tmp_path / "build.log")
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    leaked = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import pytest"], capture_output=True, check=False
    )
    assert leaked.returncode != 0, "the image's venv must not see the test environment's packages"

    # Start the service as the final stage does: its ENV, its CMD, its WORKDIR.
    ckpt = tmp_path / "models" / "current"
    if (BUNDLED / "config.json").is_file():
        shutil.copytree(BUNDLED, ckpt)
    else:
        mc = ModelConfig(z_dim=8, g_width=8, d_width=8)
        save_checkpoint(ckpt, *build_models(mc, seed=0), build_config(mc, step=3))
    mapped = {
        "/models/current": str(ckpt),
        "/opt/gan/mnist-classifier": str(CLASSIFIER),
        "/data": str(tmp_path / "data"),
        "/tmp/matplotlib": str(tmp_path / "mpl"),
    }
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAN_", "VIRTUAL_ENV"))}
    for key, value in final.key_values("ENV").items():
        if key == "PATH":
            assert value == "/opt/venv/bin:$PATH"
            env[key] = f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"
        elif value.startswith("/"):
            assert value in mapped, f"map the image's {key}={value} to a local path in this test"
            env[key] = mapped[value]
        else:
            env[key] = value
    assert env["GAN_HOST"] == "0.0.0.0"
    env |= {"GAN_HOST": "127.0.0.1", "GAN_PORT": str(port)}
    (workdir,) = [i.value for i in final.of("WORKDIR")]
    assert workdir == "/models"
    cmd = exec_form(final.of("CMD")[-1].value)
    assert cmd == ["gan-serve"]

    server_log = tmp_path / "server.log"
    with open(server_log, "w") as log:
        proc = subprocess.Popen(
            [str(venv / "bin" / cmd[0]), *cmd[1:]],
            cwd=ckpt.parent,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        status = 0
        while time.monotonic() < deadline:
            assert proc.poll() is None, (
                f"gan-serve exited with {proc.returncode}:\n{server_log.read_text()[-3000:]}"
            )
            try:
                status, _, body = request(port, "/ready")
            except OSError:
                status = 0
            if status == 200:
                break
            time.sleep(0.5)
        assert status == 200, f"/ready never answered 200:\n{server_log.read_text()[-3000:]}"

        status, headers, body = request(port, "/generate", {"n": 4, "seed": 1, "format": "grid"})
        assert status == 200, body[:500]
        assert headers.get("content-type") == "image/png"
        assert body[:8] == b"\x89PNG\r\n\x1a\n"

        # The web page and the API docs' assets are package data: installed, not just in the tree.
        for path, content_type in [
            ("/", "text/html"),
            ("/static/app.js", "javascript"),
            ("/static/api.js", "javascript"),
            ("/static/app.css", "text/css"),
            ("/docs", "text/html"),
            ("/static/vendor/swagger-ui-bundle.js", "javascript"),
            ("/static/vendor/redoc.standalone.js", "javascript"),
        ]:
            status, headers, body = request(port, path)
            assert status == 200, (path, body[:300])
            assert content_type in headers.get("content-type", ""), (path, headers)

        health = subprocess.run(
            healthcheck_command(final),
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert health.returncode == 0, f"the image's HEALTHCHECK fails: {health.stderr}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (
        f"gan-serve did not stop cleanly on SIGTERM:\n{server_log.read_text()[-3000:]}"
    )
