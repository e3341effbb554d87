#!/usr/bin/env bash
# Fill a wheel folder with every package the Docker image installs, so that the image builds with
# no network at all:   scripts/docker-wheels.sh && GAN_WHEELS=all docker compose build
#
# Usage: scripts/docker-wheels.sh [DIR] [extra pip download options]
#   DIR            the folder to fill (default: wheels/ in the project root, the one the Dockerfile
#                  reads)
#   extra options  passed to `pip download`; when this machine is not Linux with CPython 3.11 on the
#                  image's CPU, name the image's platform, e.g.
#                  --platform manylinux_2_28_x86_64 --python-version 3.11 --only-binary=:all:
# Environment: PYTHON (default: the project's .venv/bin/python, else python3), TORCH_VERSION
# (default 2.13.0), TORCH_INDEX_URL (default: whatever index pip is configured with; PyTorch's
# CPU index is https://download.pytorch.org/whl/cpu).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$root/wheels}
shift || true
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
fi
torch_version=${TORCH_VERSION:-2.13.0}
mkdir -p "$dest"

# The project's dependencies and its build backend, read from pyproject.toml.
reqs=$(mktemp)
trap 'rm -f "$reqs"' EXIT
"$py" - "$root/pyproject.toml" >"$reqs" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as fh:
    meta = tomllib.load(fh)
print("\n".join(meta["project"]["dependencies"] + meta["build-system"]["requires"]))
PY

# torch (and its own dependencies) first, from TORCH_INDEX_URL when given ...
torch_index=()
[ -n "${TORCH_INDEX_URL:-}" ] && torch_index=(--index-url "$TORCH_INDEX_URL")
"$py" -m pip download --quiet --dest "$dest" "${torch_index[@]}" "$@" "torch==$torch_version"
# ... then everything else, with torch pinned so that pip never picks another build of it.
"$py" -m pip download --quiet --dest "$dest" --find-links "$dest" "$@" \
  "torch==$torch_version" -r "$reqs"
echo "$dest: $(find "$dest" -maxdepth 1 -name '*.whl' | wc -l) wheels, $(du -sh "$dest" | cut -f1)"
