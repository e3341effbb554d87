#!/usr/bin/env bash
# Creates the peer servers' own virtual environments for `bench/serve_load.py --peers`:
#
#   $PEERS_VENV/bentoml      bentoml (+ torch, numpy, pillow, safetensors)
#   $PEERS_VENV/torchserve   torchserve + torch-model-archiver (+ the same)
#   $PEERS_VENV/litserve     litserve (+ the same)
#   $PEERS_VENV/rayserve     ray[serve] (+ the same)
#
# PEERS_VENV defaults to bench/.peers-venv (git-ignored). torch is installed FIRST with
# TORCH_SPEC (default torch==2.13.0, the same build as the project's .venv; pip takes the CPU
# wheel from its local find-links here), so the peers' own dependency resolution never pulls a
# different (CUDA) torch. TorchServe's frontend is Java: a JDK >= 11 must answer `java -version`;
# if none does, openjdk-17-jre-headless is installed from Debian (as root).
#
# Usage: bash bench/peers/setup.sh [bentoml] [torchserve] [litserve] [rayserve]   (none: all)
# Re-running it is cheap: an environment whose stamp file matches the pinned versions is kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PEERS_VENV="${PEERS_VENV:-$ROOT/bench/.peers-venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
# Pinned to versions the registry has (pip index versions bentoml / torchserve).
BENTOML_SPEC="${BENTOML_SPEC:-bentoml==1.4.40}"
# TorchServe 0.12's worker imports yaml without declaring it (ModuleNotFoundError otherwise).
TORCHSERVE_SPEC="${TORCHSERVE_SPEC:-torchserve==0.12.0 torch-model-archiver==0.12.0 pyyaml}"
# python-multipart: what FastAPI needs to parse the /score form (litserve does not declare it).
LITSERVE_SPEC="${LITSERVE_SPEC:-litserve==0.2.19 python-multipart}"
# ray[serve] brings FastAPI, uvicorn and aiohttp; python-multipart parses the /score upload.
RAYSERVE_SPEC="${RAYSERVE_SPEC:-ray[serve]==2.60.0 python-multipart}"
# What our checkpoint loader and preprocessing import (gan.checkpoint, gan.preprocess).
COMMON_SPEC="numpy safetensors pillow"

say() { printf 'peers setup: %s\n' "$*" >&2; }

make_venv() {  # make_venv NAME PACKAGES...
    local name="$1"
    shift
    local dir="$PEERS_VENV/$name"
    local stamp="$dir/.installed"
    local want="$TORCH_SPEC | $* | $COMMON_SPEC"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        say "$name: up to date ($dir)"
        return 0
    fi
    local started=$SECONDS
    say "$name: creating $dir"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --upgrade pip
    # torch first, so nothing below can resolve to another build of it.
    # shellcheck disable=SC2086  # the specs are word lists on purpose
    "$dir/bin/pip" install --quiet $TORCH_SPEC
    # ... and pinned to the installed build while the rest resolves.
    local torch_pin
    torch_pin="torch==$("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')"
    # shellcheck disable=SC2086
    "$dir/bin/pip" install --quiet "$torch_pin" $COMMON_SPEC "$@"
    echo "$want" >"$stamp"
    say "$name: installed in $((SECONDS - started)) s, $(du -sh "$dir" | cut -f1)"
}

ensure_java() {
    if java -version >/dev/null 2>&1; then
        say "java: $(java -version 2>&1 | head -n 1)"
        return 0
    fi
    if [[ "$(id -u)" != 0 ]]; then
        say "TorchServe needs a JDK >= 11 and none was found; install one, e.g." \
            "sudo apt-get install -y openjdk-17-jre-headless"
        return 1
    fi
    say "java: not found, installing openjdk-17-jre-headless from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    java -version
}

peers=("$@")
if [[ ${#peers[@]} -eq 0 ]]; then
    peers=(bentoml torchserve litserve rayserve)
fi
mkdir -p "$PEERS_VENV"
for peer in "${peers[@]}"; do
    case "$peer" in
        bentoml)
            # shellcheck disable=SC2086
            make_venv bentoml $BENTOML_SPEC
            ;;
        torchserve)
            ensure_java
            # shellcheck disable=SC2086
            make_venv torchserve $TORCHSERVE_SPEC
            ;;
        litserve)
            # shellcheck disable=SC2086
            make_venv litserve $LITSERVE_SPEC
            ;;
        rayserve)
            # shellcheck disable=SC2086
            make_venv rayserve $RAYSERVE_SPEC
            ;;
        *)
            say "unknown peer '$peer' (known: bentoml, torchserve, litserve, rayserve)"
            exit 2
            ;;
    esac
done
