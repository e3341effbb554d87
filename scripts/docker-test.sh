#!/usr/bin/env bash
# End-to-end check of the Docker deployment, for real: build the image, `up` the api, call it
# through the published port, train a few steps with the `train` profile into the checkpoint volume,
# see the running api swap the new model in by itself (no restart), then take everything down.
#
# Usage: scripts/docker-test.sh        (make docker-test)
# Needs a Docker engine and compose (v2 `docker compose` or v1 `docker-compose`); on the project's
# machines: bash ../shared/tools/docker-local.sh
# Environment:
#   GAN_DATA_DIR   MNIST IDX folder mounted into `train` (default: ../shared/data/mnist)
#   GAN_WHEELS     none | torch | all (default all: every package from ./wheels, filled first by
#                  scripts/docker-wheels.sh, so the build needs no network)
#   TRAIN_STEPS    training steps of the `train` run (default 40)
#   HEALTH_TIMEOUT seconds to wait for the api to become healthy (default 300)
# Leaves no container, network or volume behind, whatever happens (trap). The image
# (gan-serve:docker-test) stays, so that the next run reuses its layers.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n== %s\n' "$*"; }
die() { printf 'docker-test: FAILED: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "no docker client; on the project's machines run: bash ../shared/tools/docker-local.sh"
docker info >/dev/null 2>&1 || die "no Docker engine answers; start it (here: bash ../shared/tools/docker-local.sh)"
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
  build_opts=()
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
  build_opts=(--force-rm)  # v1's classic builder otherwise keeps the container of a failed step
else
  die "neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed"
fi
command -v curl >/dev/null || die "curl is needed on the host"

export COMPOSE_PROJECT_NAME="gan-docker-test-$$"
export GAN_IMAGE=gan-serve:docker-test
export GAN_WHEELS=${GAN_WHEELS:-all}
export GAN_PUBLISH_ADDRESS=127.0.0.1
GAN_PUBLISH_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export GAN_PUBLISH_PORT
export GAN_DATA_DIR=${GAN_DATA_DIR:-$(cd "$root/.." && pwd)/shared/data/mnist}
unset GAN_CHECKPOINT_DIR GAN_USER
# A key checks that settings reach the container through compose's environment pass-through.
GAN_API_KEY="docker-test-$(python3 -c 'import secrets; print(secrets.token_hex(8))')"
export GAN_API_KEY
auth=(-H "Authorization: Bearer $GAN_API_KEY")
train_steps=${TRAIN_STEPS:-40}
health_timeout=${HEALTH_TIMEOUT:-300}
base="http://127.0.0.1:$GAN_PUBLISH_PORT"
work=$(mktemp -d)

dc() { "${compose[@]}" --profile train "$@"; }

cleanup() {
  local rc=$?
  step "cleanup (exit status so far: $rc)"
  dc down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  # `run` containers and anything else labelled with this project, whatever compose left.
  local left
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  [ -n "$left" ] && docker rm -f $left >/dev/null 2>&1
  left=$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  [ -n "$left" ] && docker volume rm -f $left >/dev/null 2>&1
  rm -rf "$work"
  left=$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")
  if [ -n "$left" ]; then
    echo "containers still present: $left" >&2
    rc=1
  else
    echo "no containers, networks or volumes of $COMPOSE_PROJECT_NAME left"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

api_id() { dc ps -q api; }

# /health answers as soon as the process does; /ready once the models are loaded.
wait_ready() {
  local start=$SECONDS
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$base/ready")" = 200 ]; do
    [ $((SECONDS - start)) -lt 120 ] || die "/ready not 200 after 120 s"
    sleep 1
  done
}

wait_healthy() {
  local cid status start=$SECONDS
  cid=$(api_id)
  [ -n "$cid" ] || die "the api container does not exist"
  while :; do
    status=$(docker inspect -f '{{.State.Status}}/{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$cid")
    case "$status" in
      running/healthy) echo "api healthy after $((SECONDS - start)) s"; return 0 ;;
      exited/* | dead/* | running/unhealthy)
        dc logs --tail 60 api >&2 || true
        die "api is $status" ;;
    esac
    if [ $((SECONDS - start)) -ge "$health_timeout" ]; then
      dc logs --tail 60 api >&2 || true
      die "api not healthy after $health_timeout s (last: $status)"
    fi
    sleep 2
  done
}

# call EXPECTED_STATUS OUTFILE LABEL curl-args...: one request; prints "LABEL -> status", fails on
# any other status than the expected one.
call() {
  local want=$1 out=$2 label=$3 got
  shift 3
  got=$(curl -sS -o "$out" -w '%{http_code}' "$@") || die "$label: no answer"
  echo "$label -> $got"
  [ "$got" = "$want" ] || { head -c 600 "$out" >&2; echo >&2; die "$label: expected HTTP $want, got $got"; }
}

# json FILE EXPR: print EXPR evaluated with d = the JSON document in FILE.
json() { python3 -c 'import json, sys; print(eval(sys.argv[2], {"d": json.load(open(sys.argv[1]))}))' "$@"; }

step "compose: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -1)), project $COMPOSE_PROJECT_NAME"
dc config -q && echo "compose file valid"

if [ "$GAN_WHEELS" != none ]; then
  step "wheel folder for WHEELS=$GAN_WHEELS (scripts/docker-wheels.sh)"
  bash scripts/docker-wheels.sh "$root/wheels" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
fi

step "build $GAN_IMAGE (WHEELS=$GAN_WHEELS)"
start=$SECONDS
dc build "${build_opts[@]}" api >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; die "image build failed"; }
echo "built in $((SECONDS - start)) s"
size=$(docker image inspect -f '{{.Size}}' "$GAN_IMAGE")
base_size=$(docker image inspect -f '{{.Size}}' python:3.11-slim 2>/dev/null || echo 0)
echo "image size: $((size / 1000000)) MB (base python:3.11-slim: $((base_size / 1000000)) MB, ours on top: $(((size - base_size) / 1000000)) MB)"

step "image contents"
docker run --rm --entrypoint sh "$GAN_IMAGE" -c '
  set -e
  echo "user: $(id -u):$(id -g)"; [ "$(id -u)" != 0 ]
  for p in /wheels /src /opt/venv/lib/python3*/site-packages/torch/include /root/.cache/pip; do
    if [ -e "$p" ]; then echo "unexpected in the image: $p"; exit 1; fi
  done
  for t in gcc cc make; do if command -v "$t" >/dev/null; then echo "build tool in the image: $t"; exit 1; fi; done
  test -f /models/current/config.json
  echo "venv: $(du -sh /opt/venv | cut -f1); no wheels, sources, pip cache or compilers"'

step "docker compose up -d (api)"
dc up -d api
wait_healthy
echo "published: $(docker port "$(api_id)" 8000)"
cid=$(api_id)
[ "$(docker exec "$cid" id -u)" = 10001 ] || die "api does not run as uid 10001"
echo "api runs as uid $(docker exec "$cid" id -u); GAN_ settings: $(docker exec "$cid" sh -c 'env | grep ^GAN_ | sort | sed "s/^GAN_API_KEY=.*/GAN_API_KEY=(set)/" | tr "\n" " "')"

step "calls through $base"
call 200 "$work/health" "GET /health" "$base/health"
wait_ready
call 200 "$work/ready" "GET /ready" "$base/ready"
call 401 "$work/noauth" "GET /info without the API key" "$base/info"
call 200 "$work/info0" "GET /info" "${auth[@]}" "$base/info"
model0=$(json "$work/info0" 'd["model"]["model_id"]')
step0=$(json "$work/info0" 'd["model"]["step"]')
echo "serving: $model0 (step $step0)"
call 200 "$work/grid.png" "POST /generate n=16 grid" "${auth[@]}" -X POST -H 'Content-Type: application/json' \
  -d '{"n": 16, "seed": 7, "format": "grid"}' "$base/generate"
[ "$(head -c 8 "$work/grid.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || die "/generate did not return a PNG"
call 200 "$work/one.png" "POST /generate n=1 png" "${auth[@]}" -X POST -H 'Content-Type: application/json' \
  -d '{"n": 1, "seed": 7, "format": "png"}' "$base/generate"
echo "grid: $(wc -c <"$work/grid.png") bytes PNG; single: $(wc -c <"$work/one.png") bytes PNG"
call 200 "$work/score" "POST /score (multipart files=one.png)" "${auth[@]}" -X POST -F "files=@$work/one.png;type=image/png" "$base/score"
echo "score of the generated image: $(json "$work/score" '{k: d["results"][0][k] for k in ("format", "width", "height", "logit", "probability", "realness_percentile")}')"

step "train $train_steps steps: compose --profile train run --rm train (MNIST from $GAN_DATA_DIR, read-only)"
[ -e "$GAN_DATA_DIR/train-images-idx3-ubyte.gz" ] || [ -e "$GAN_DATA_DIR/train-images-idx3-ubyte" ] \
  || die "no MNIST at $GAN_DATA_DIR; set GAN_DATA_DIR"
start=$SECONDS
dc run --rm -T train --data mnist --steps "$train_steps" --batch-size 32 --threads 1 \
  --sample-every "$train_steps" --checkpoint-every "$train_steps" --log-every 10 --no-eval \
  2>&1 | tail -n 8
echo "trained in $((SECONDS - start)) s"
step "the api swaps the export in by itself (GAN_WATCH_S, 10 s in compose), without a restart"
model2=$model0
for _ in $(seq 60); do
  call 200 "$work/info2" "GET /info" "${auth[@]}" "$base/info" >/dev/null
  model2=$(json "$work/info2" 'd["model"]["model_id"]')
  [ "$model2" != "$model0" ] && break
  sleep 1
done
step2=$(json "$work/info2" 'd["model"]["step"]')
echo "model before: $model0 (step $step0)"
echo "model after:  $model2 (step $step2)"
[ "$model2" != "$model0" ] || die "the api still serves $model0 60 s after the export"
[ "$step2" = "$train_steps" ] || die "expected the new model at step $train_steps, got $step2"
call 200 "$work/models" "GET /models" "${auth[@]}" "$base/models"
reloads=$(json "$work/models" 'd["models"][0]["reloads"]')
[ "$reloads" -ge 1 ] || die "GET /models reports $reloads reloads"
# The export is calibrated and given an encoder in place after it appears, so a watch poll may
# have caught it before that: one reload catches up (or keeps it), a second must keep it.
call 200 "$work/reload" "POST /models/current/reload" "${auth[@]}" -X POST "$base/models/current/reload"
call 200 "$work/reload" "POST /models/current/reload (nothing new: kept)" "${auth[@]}" -X POST "$base/models/current/reload"
[ "$(json "$work/reload" 'd["swapped"]')" = False ] || die "an unchanged checkpoint was swapped"
echo "swapped in by the watch ($reloads reload), no restart"
call 200 "$work/grid2.png" "POST /generate n=4 grid" "${auth[@]}" -X POST -H 'Content-Type: application/json' \
  -d '{"n": 4, "seed": 7, "format": "grid"}' "$base/generate"

step "docker compose down -v"
dc down --volumes --remove-orphans --timeout 20
echo
echo "docker-test: PASSED"
