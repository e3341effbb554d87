# gan-serve: the HTTP service (gan-serve) and the trainer (gan-train) with the bundled MNIST model.
#
#   docker compose up                     build and serve on http://localhost:8000 (docs/deployment.md)
#   docker build -t gan-serve .           the image alone
#
# Build arguments:
#   TORCH_VERSION    torch release to install (default 2.13.0)
#   TORCH_INDEX_URL  where torch comes from; default PyTorch's CPU wheel index, which keeps the image
#                    small. GPU: a CUDA index, e.g. https://download.pytorch.org/whl/cu128
#   WHEELS           none  torch from TORCH_INDEX_URL, everything else from PyPI (default)
#                    torch torch and its dependencies from ./wheels, the rest from PyPI
#                    all   every package from ./wheels, no network at all (air-gapped builds);
#                          fill the folder with: scripts/docker-wheels.sh
# Only the builder stage sees ./wheels; the final image holds the virtual environment alone.
#
# tests/deploy/test_install_like_docker.py replays this builder stage's COPY and RUN steps outside
# Docker, so keep every RUN step runnable in any POSIX shell, with paths given through $VENV,
# $WHEELS_DIR or relative to WORKDIR.

FROM python:3.11-slim AS builder

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG WHEELS=none

ENV VENV=/opt/venv \
    WHEELS_DIR=/wheels \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1

WORKDIR /src
RUN python -m venv "$VENV"

# The optional wheel folder: `wheel[s]` matches nothing when ./wheels does not exist, and the
# always-present script that fills it keeps the instruction valid then (pip ignores non-wheels).
COPY scripts/docker-wheels.sh wheel[s] /wheels/

# 1. torch, in a layer of its own so that changes to the code never reinstall it.
RUN set -eu; \
    case "$WHEELS" in \
      none) set -- --index-url "$TORCH_INDEX_URL" ;; \
      torch|all) set -- --no-index --find-links "$WHEELS_DIR" ;; \
      *) echo "build argument WHEELS must be none, torch or all, not '$WHEELS'" >&2; exit 2 ;; \
    esac; \
    "$VENV/bin/pip" install --no-cache-dir "$@" "torch==$TORCH_VERSION"

# 2. The project's other dependencies, read from pyproject.toml (cached until it changes).
COPY pyproject.toml README.md LICENSE ./
RUN set -eu; \
    if [ "$WHEELS" = all ]; then set -- --no-index --find-links "$WHEELS_DIR"; else set --; fi; \
    python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt; \
    "$VENV/bin/pip" install --no-cache-dir "$@" -r requirements.txt

# 3. The project itself, as a regular (non-editable) install.
COPY gan/ gan/
COPY training/ training/
COPY service/ service/
RUN set -eu; \
    if [ "$WHEELS" = all ]; then set -- --no-index --find-links "$WHEELS_DIR"; else set --; fi; \
    "$VENV/bin/pip" install --no-cache-dir --no-deps "$@" . ; \
    "$VENV/bin/pip" check

# 4. Drop what serving and training never load: torch's C++ headers, CMake files and C++ test
#    binaries, the packages' own test suites, and the bytecode (about 80 MB) of torch's compiler
#    stack (torch._inductor, torch._dynamo, sympy, mpmath, networkx): gan-serve never imports
#    it; gan-train does, and Python compiles it in memory at start, a second or two once per run.
#    setuptools stays: torch declares it as a requirement.
#    Then prove that what is left still installs cleanly and imports.
RUN set -eu; \
    site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
    rm -rf "$site/torch/include" "$site/torch/share" "$site/torch/test" \
           "$site"/torch/bin/test_* "$site"/torch/bin/*Test "$site"/torch/bin/protoc*; \
    find "$site" -depth -type d -name tests -not -path "$site/torch/*" -exec rm -rf {} +; \
    find "$site/torch/_inductor" "$site/torch/_dynamo" "$site/sympy" "$site/mpmath" "$site/networkx" \
         -depth -type d -name __pycache__ -exec rm -rf {} +; \
    "$VENV/bin/pip" check; \
    "$VENV/bin/python" -c "import torch, gan.checkpoint, service, training; torch.zeros(1).sum().item()"

FROM python:3.11-slim

# Settings of gan-serve (every GAN_* variable is listed in docs/api.md); GAN_HOST=0.0.0.0 so that
# the published port reaches the service. /models is the checkpoint store that docker-compose.yml
# mounts as a volume: the api serves /models/current, which the image seeds with the bundled model,
# and the train service writes runs to /models/runs/ and exports its result to /models/current.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    GAN_HOST=0.0.0.0 \
    GAN_PORT=8000 \
    GAN_WORKERS=1 \
    GAN_CHECKPOINT=/models/current \
    GAN_CLASSIFIER_DIR=/opt/gan/mnist-classifier \
    GAN_DATA_DIR=/data \
    MPLCONFIGDIR=/tmp/matplotlib

RUN useradd --system --uid 10001 --user-group --home-dir /models --no-create-home --shell /usr/sbin/nologin gan \
 && mkdir -p /models /data \
 && chown 10001:10001 /models

COPY --from=builder /opt/venv /opt/venv
COPY --chown=10001:10001 checkpoints/mnist/ /models/current/
COPY checkpoints/mnist-classifier/ /opt/gan/mnist-classifier/

USER 10001:10001
WORKDIR /models
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('GAN_PORT', '8000'), timeout=4)"]

CMD ["gan-serve"]
