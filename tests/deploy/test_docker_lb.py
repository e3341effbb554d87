"""The compose `lb` profile on a real Docker engine: 2 replicas behind HAProxy, one killed and
restarted under load. Opt-in (it builds images and starts containers): ``make docker-lb-test``,
i.e. ``GAN_DOCKER_LB_TEST=1 pytest tests/deploy/test_docker_lb.py``; on the project's machines
``bash ../shared/tools/docker-local.sh`` provides the engine.

What it checks:

* a bounded load from the host through the balancer (:data:`WORKERS` concurrent clients, each
  at most one request per :data:`PACE_S` seconds, POST /generate (16 images) and POST /score in
  turn, at most
  :data:`MAX_REQUESTS` requests) while one replica
  is killed (SIGKILL, mid-request) and started again: no request fails (every answer is 200:
  HAProxy retries or redispatches what the killed replica dropped; no connection error), every 200 names the model (``X-Model-Id`` equal to GET /info's), and the
  killed replica takes traffic again once its /ready answers;
* HAProxy's view: both replicas UP at the start, the killed one DOWN, then UP again;
* each replica's /metrics is scraped (from inside the compose network, as Prometheus would) and
  shows the requests it answered.

Environment: GAN_WHEELS (none | torch | all, default all: scripts/docker-wheels.sh fills
./wheels first, so the build needs no network but Debian's for HAProxy). Leaves no container,
network or volume of its compose project behind.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.deploy.dockerfile import ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("GAN_DOCKER_LB_TEST") != "1",
        reason="opt-in: make docker-lb-test (GAN_DOCKER_LB_TEST=1; needs a Docker engine)",
    ),
]

WORKERS = 4
#: Each client sends at most one request per PACE_S seconds (at most WORKERS / PACE_S per second),
#: and all of them together at most MAX_REQUESTS.
PACE_S = 0.1
MAX_REQUESTS = 20_000
#: Requests answered before the kill, and after the restarted replica is back.
BEFORE, AFTER = 60, 60


def _compose() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("neither 'docker compose' (v2) nor 'docker-compose' (v1) is installed")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    compose: list[str]
    env: dict[str, str]
    base: str
    key: str

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> str:
        proc = subprocess.run(
            [*self.compose, "--project-directory", str(ROOT), "--profile", "lb", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            pytest.fail(
                f"compose {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def ids(self, service: str) -> list[str]:
        return sorted(self.run("ps", "-q", service).split())

    def in_lb(self, url: str) -> str:
        """GET ``url`` from inside the balancer's container (the compose network)."""
        (lb,) = self.ids("lb")
        code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
        out = subprocess.run(
            ["docker", "exec", lb, "python", "-c", code], capture_output=True, text=True, timeout=30
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        return out.stdout

    def servers(self) -> dict[str, str]:
        """HAProxy's replica slots with an address: name -> status (UP, DOWN, ...)."""
        rows = self.in_lb("http://127.0.0.1:8404/stats;csv").splitlines()
        header = rows[0].lstrip("# ").split(",")
        out = {}
        for row in rows[1:]:
            cells = dict(zip(header, row.split(","), strict=False))
            if (
                cells.get("pxname") == "replicas"
                and cells.get("svname") not in ("FRONTEND", "BACKEND")
                and not cells.get("status", "").startswith("MAINT")  # slots without a replica
            ):
                out[cells["svname"]] = cells["status"]
        return out


def _wait(what: str, predicate: object, timeout: float = 300) -> None:
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < timeout:
        try:
            last = predicate()  # type: ignore[operator]
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            last = exc
        if last is True:
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    compose = _compose()
    port = _free_port()
    key = "lb-test-" + secrets.token_hex(8)
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": f"gan-lb-test-{os.getpid()}",
        "GAN_IMAGE": "gan-serve:docker-test",
        "GAN_LB_IMAGE": "gan-lb:docker-test",
        "GAN_WHEELS": os.environ.get("GAN_WHEELS", "all"),
        "GAN_LB_PUBLISH_ADDRESS": "127.0.0.1",
        "GAN_LB_PUBLISH_PORT": str(port),
        "GAN_API_KEY": key,
        "GAN_TORCH_THREADS": "1",
    }
    for name in ("GAN_CHECKPOINT_DIR", "GAN_USER"):
        env.pop(name, None)
    s = Stack(compose, env, f"http://127.0.0.1:{port}", key)
    try:
        if env["GAN_WHEELS"] != "none":
            subprocess.run(
                ["bash", "scripts/docker-wheels.sh", str(ROOT / "wheels")],
                cwd=ROOT,
                check=True,
                capture_output=True,
                timeout=1800,
            )
        build = ["--force-rm"] if compose == ["docker-compose"] else []
        s.run("build", *build, "replica", "lb", timeout=3600)
        s.run("up", "-d", "--scale", "replica=2", "replica", "lb")
        _wait("both replicas UP in HAProxy", lambda: list(s.servers().values()) == ["UP", "UP"])
        yield s
    finally:
        s.run("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
        project = env["COMPOSE_PROJECT_NAME"]
        left = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        if left:
            subprocess.run(["docker", "rm", "-f", *left], capture_output=True)
        assert not left, f"containers of {project} were left behind: {left}"


@dataclass
class Load:
    """WORKERS clients through the balancer until stopped (or MAX_REQUESTS)."""

    base: str
    key: str
    png: bytes
    results: list[tuple[float, str, int, str]] = field(
        default_factory=list
    )  # time, route, status, model
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, i: int) -> tuple[str, urllib.request.Request]:
        auth = {"Authorization": f"Bearer {self.key}"}
        if i % 2 == 0:
            body = json.dumps({"n": 16, "seed": i, "format": "grid"}).encode()
            return "generate", urllib.request.Request(
                self.base + "/generate", body, {**auth, "Content-Type": "application/json"}
            )
        boundary = uuid.uuid4().hex
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="x.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + self.png
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        return "score", urllib.request.Request(self.base + "/score", body, headers)

    def worker(self, first: int) -> None:
        i = first
        while not self.stop.is_set() and len(self.results) + len(self.errors) < MAX_REQUESTS:
            started = time.monotonic()
            route, req = self.request(i)
            i += WORKERS
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    resp.read()
                    status, model = resp.status, resp.headers.get("X-Model-Id", "")
            except urllib.error.HTTPError as exc:
                status, model = exc.code, exc.headers.get("X-Model-Id", "")
            except OSError as exc:  # no HTTP answer at all
                with self.lock:
                    self.errors.append(f"{route}: {exc!r}")
                continue
            with self.lock:
                self.results.append((time.monotonic(), route, status, model))
            self.stop.wait(max(0.0, PACE_S - (time.monotonic() - started)))

    def count(self) -> int:
        return len(self.results)


def _get(stack: Stack, path: str) -> bytes:
    req = urllib.request.Request(
        stack.base + path, headers={"Authorization": f"Bearer {stack.key}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return bytes(resp.read())


#: HAProxy's httplog: ".../<srv_conn>/<retries> <srv_queue>/<backend_queue> "METHOD PATH";
#: retries carry a "+" when the request was redispatched to another server.
_RETRIES = re.compile(r" \d+/\d+/\d+/\d+/(\+?)(\d+) \d+/\d+ \"(?:GET|POST) /(?:generate|score)")


def _retried(lb_log: str) -> tuple[int, int]:
    """(requests HAProxy retried, of which redispatched) from its log."""
    found = [m.groups() for m in _RETRIES.finditer(lb_log)]
    return sum(int(n) > 0 for _, n in found), sum(plus == "+" for plus, _ in found)


def _requests_answered(metrics: str) -> int:
    """Sum of gan_http_requests_total for /generate and /score, status 200."""
    total = 0.0
    for line in metrics.splitlines():
        if (
            line.startswith("gan_http_requests_total{")
            and 'status="200"' in line
            and ('route="/generate"' in line or 'route="/score"' in line)
        ):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def test_replicas_behind_haproxy_survive_a_killed_replica(stack: Stack) -> None:
    info = json.loads(_get(stack, "/info"))
    model_id = info["model"]["model_id"]
    req = urllib.request.Request(
        stack.base + "/generate",
        json.dumps({"n": 1, "seed": 1, "format": "png"}).encode(),
        {"Authorization": f"Bearer {stack.key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        png = resp.read()
    load = Load(stack.base, stack.key, png)
    threads = [threading.Thread(target=load.worker, args=(w,), daemon=True) for w in range(WORKERS)]
    for t in threads:
        t.start()
    killed_at = back_at = float("inf")
    try:
        _wait(f"{BEFORE} answers before the kill", lambda: load.count() >= BEFORE, 180)
        victim = stack.ids("replica")[0]
        subprocess.run(["docker", "kill", victim], check=True, capture_output=True)
        killed_at = time.monotonic()
        _wait(
            "HAProxy to take the killed replica out",
            lambda: (
                "UP" in stack.servers().values()
                and len([v for v in stack.servers().values() if v == "UP"]) == 1
            ),
            60,
        )
        subprocess.run(["docker", "start", victim], check=True, capture_output=True)
        _wait(
            "the restarted replica UP again", lambda: list(stack.servers().values()) == ["UP", "UP"]
        )
        back_at, back_count = time.monotonic(), load.count()
        _wait(f"{AFTER} answers after its return", lambda: load.count() >= back_count + AFTER, 180)
    finally:
        load.stop.set()
        for t in threads:
            t.join(timeout=90)
        statuses = Counter(status for _, _, status, _ in load.results)
        during = [r for r in load.results if killed_at <= r[0] <= back_at]
        print(
            f"\n{len(load.results)} answers ({dict(statuses)}), {len(during)} of them while a "
            f"replica was down or restarting ({back_at - killed_at:.0f} s), "
            f"{len(load.errors)} without an HTTP answer"
        )
    assert not load.errors, load.errors[:5]
    # HAProxy retries and redispatches what the killed replica dropped: no request fails.
    assert set(statuses) == {200}, f"failed requests: {dict(statuses)}"
    assert statuses[200] >= BEFORE + AFTER
    unnamed = [r for r in load.results if r[2] == 200 and r[3] != model_id]
    assert not unnamed, f"{len(unnamed)} answers without X-Model-Id {model_id}: {unnamed[:3]}"
    assert {route for _, route, _, _ in load.results} == {"generate", "score"}

    # Each replica's /metrics, scraped inside the network like Prometheus: both answered requests,
    # the restarted one (its counters start again at 0) after its restart.
    replicas = stack.ids("replica")
    assert victim in replicas and len(replicas) == 2
    answered = {}
    for cid in replicas:
        ip = subprocess.run(
            [
                "docker",
                "inspect",
                "-f",
                "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                cid,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        metrics = stack.in_lb(f"http://{ip}:8000/metrics")
        assert "gan_model_info{" in metrics and model_id in metrics
        answered[cid[:12]] = _requests_answered(metrics)
    print(f"answered per replica since its (re)start, from /metrics: {answered}")
    (lb,) = stack.ids("lb")
    logs = subprocess.run(["docker", "logs", lb], capture_output=True, text=True, check=True)
    retried, redispatched = _retried(logs.stdout + logs.stderr)
    print(f"HAProxy retried {retried} requests, {redispatched} of them on another replica")
    assert all(n > 0 for n in answered.values()), answered
