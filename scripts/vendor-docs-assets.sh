#!/usr/bin/env bash
# Refresh the Swagger UI and ReDoc files that /docs and /redoc serve from service/static/vendor/,
# taken from a pinned release of the fastapi-offline package on PyPI (MIT; it bundles Swagger UI,
# Apache-2.0, and ReDoc, MIT). The files are committed, so the service, the Docker image and an
# air-gapped machine serve the API docs without a CDN and without this package installed.
#
# Usage: scripts/vendor-docs-assets.sh [VERSION]     (default: the version in vendor/README.md)
# Environment: PYTHON (default: the project's .venv/bin/python, else python3).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=$root/service/static/vendor
version=${1:-$(sed -n 's/^package: fastapi-offline==\(.*\)$/\1/p' "$dest/README.md")}
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x "$root/.venv/bin/python" ]; then py=$root/.venv/bin/python; else py=python3; fi
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$py" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "fastapi-offline==$version"
"$py" - "$tmp" "$dest" <<'PY'
import hashlib, pathlib, sys, zipfile
tmp, dest = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = tmp.glob("fastapi_offline-*.whl")
names = ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"]
sums = []
with zipfile.ZipFile(wheel) as zf:
    for name in names:
        data = zf.read(f"fastapi_offline/static/{name}")
        (dest / name).write_bytes(data)
        sums.append(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
(dest / "SHA256SUMS").write_text("".join(sums))
print(f"{dest}: {len(names)} files from {wheel.name}")
PY
sed -i "s/^package: fastapi-offline==.*$/package: fastapi-offline==$version/" "$dest/README.md"
