"""The deployment scripts: valid bash, and a clear message where Docker is missing (as in CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT

SCRIPTS = [
    "docker-test.sh",
    "docker-wheels.sh",
    "lint-docker.sh",
    "vendor-docs-assets.sh",
    "install-chromium.sh",
]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_valid_bash(name: str) -> None:
    proc = subprocess.run(
        ["bash", "-n", str(ROOT / "scripts" / name)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_docker_test_says_what_is_missing_without_docker(tmp_path: Path) -> None:
    # A PATH with bash's usual tools but no docker client.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("dirname", "cat", "python3"):
        for d in ("/usr/bin", "/bin"):
            if (Path(d) / tool).exists():
                (bin_dir / tool).symlink_to(Path(d) / tool)
                break
    proc = subprocess.run(
        ["/bin/bash", str(ROOT / "scripts" / "docker-test.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 1
    assert "no docker client" in proc.stderr and "docker-local.sh" in proc.stderr


def test_install_chromium_never_fails_the_run(tmp_path: Path) -> None:
    """.ci/run calls it before the tests: where apt-get fails, the browser tests skip instead."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "apt-get"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\necho "E: no network" >&2\nexit 100\n')
    fake.chmod(0o755)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-chromium.sh")],
        capture_output=True,
        text=True,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CHROMIUM_PATH": str(tmp_path / "no-chromium")},
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the browser tests will skip" in proc.stdout
    if calls.exists():  # run as root: it tried apt-get update first
        assert calls.read_text().splitlines()[0] == "update -qq"
        assert "E: no network" in proc.stdout
    assert "install-chromium.sh" in (ROOT / ".ci" / "run").read_text()


def test_install_chromium_does_nothing_when_chromium_is_there(tmp_path: Path) -> None:
    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    proc = subprocess.run(  # a PATH without apt-get: it must not even look
        ["/bin/bash", str(ROOT / "scripts" / "install-chromium.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(tmp_path), "CHROMIUM_PATH": str(browser)},
        timeout=30,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, "")
