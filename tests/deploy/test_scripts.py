"""The deployment scripts: valid bash, and a clear message where Docker is missing (as in CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.deploy.dockerfile import ROOT

SCRIPTS = ["docker-test.sh", "docker-wheels.sh", "lint-docker.sh", "vendor-docs-assets.sh"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_is_valid_bash(name: str) -> None:
    proc = subprocess.run(["bash", "-n", str(ROOT / "scripts" / name)], capture_output=True, text=True, check=False)
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
        ["/bin/bash", str(ROOT / "scripts" / "docker-test.sh")], capture_output=True, text=True,
        env={"PATH": str(bin_dir)}, timeout=30, check=False,
    )
    assert proc.returncode == 1
    assert "no docker client" in proc.stderr and "docker-local.sh" in proc.stderr
