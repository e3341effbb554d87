"""The load benchmarks' shared machinery: server processes on loopback and a closed-loop client.

Used by ``bench/serve_load.py`` (its CLI, scenarios and the peer comparison) and
``bench/serve_variants.py``:

* :class:`Server`: a server process on 127.0.0.1 (its log in a file, its process tree measured:
  CPU seconds, peak RSS (VmHWM) per process, py-spy profiles), stopped with SIGTERM then SIGKILL
  whatever happens (:func:`running`); :func:`gan_serve` starts the real ``gan-serve``,
  :func:`free_port` / :func:`free_ports` find ports;
* the HTTP floor (:func:`floor_app`, :func:`run_floor_server`): a minimal FastAPI endpoint that
  accepts the same multipart upload, decodes it with Pillow and returns a constant;
* the load client: requests encoded once (:class:`RequestSpec`, :func:`score_spec`,
  :func:`generate_spec`, :func:`sample_pngs`), N closed-loop clients for T seconds
  (:func:`run_load`, one :class:`LoadResult` per run);
* scenarios run in rotated rounds (:class:`PeerScenario`, :func:`rotated_rounds`) and the report
  rows (:data:`HEADER`, :func:`fmt_row`, :func:`machine`, :func:`median`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
MAX_REQUESTS_PER_CLIENT = 200_000  # a bound on every client loop, besides its time limit
REQUEST_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 60.0


# ------------------------------------------------------------------------------------------
# The HTTP floor: the same upload, decoded with Pillow, a constant answer
# ------------------------------------------------------------------------------------------


def floor_app() -> FastAPI:
    """FastAPI app: POST /score reads the multipart files, decodes each with Pillow."""
    app = FastAPI()
    answer = {"ok": True}

    @app.post("/score")
    async def score(request: Request) -> JSONResponse:
        form = await request.form(max_files=1000)
        try:
            for item in form.getlist("files"):
                data = await item.read()  # type: ignore[union-attr]
                with Image.open(io.BytesIO(data)) as img:
                    img.load()
        finally:
            await form.close()
        return JSONResponse(answer)

    @app.get("/ready")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    return app


def run_floor_server(port: int) -> None:
    import uvicorn

    uvicorn.run(floor_app(), host=HOST, port=port, log_level="warning", access_log=False)


# ------------------------------------------------------------------------------------------
# Server processes
# ------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process (all its threads) has used so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _process_label(argv: list[str]) -> str:
    """A short name for a server process from its command line."""
    if not argv:
        return "?"
    exe = Path(argv[0]).name
    if exe == "java":
        return "java (TorchServe frontend)"
    text = " ".join(argv)
    for needle, label in (
        ("model_service_worker", "python (TorchServe worker)"),
        ("_bentoml_impl.worker", "python (BentoML worker)"),
        ("bentoml serve", "python (BentoML supervisor)"),
        ("torchserve", "python (torchserve launcher)"),
        ("service.cli", "python (gan-serve)"),
    ):
        if needle in text:
            return label
    return exe


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set size) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class Server:
    """A server process on 127.0.0.1:port, its log in a file, stopped on exit."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        logdir: Path,
        port: int,
        *,
        cwd: Path = ROOT,
        routes: dict[str, str] | None = None,
        process_tree: bool = False,
    ) -> None:
        """``routes`` maps the benchmark's paths (/score, /generate) to this server's;
        ``process_tree``: the server runs several processes (its own session, measured and
        stopped as a whole)."""
        self.name = name
        self.port = port
        self.base = f"http://{HOST}:{port}"
        self.routes = routes or {}
        self.log_path = logdir / f"{name}.log"
        self._log = self.log_path.open("w")
        self.started = time.perf_counter()
        self.process_tree = process_tree
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=process_tree,
        )
        self.ready_s: float | None = None
        self._paused: list[int] = []

    def route(self, path: str) -> str:
        return self.routes.get(path, path)

    def pids(self) -> list[int]:
        """The server process and its descendants, now."""
        children: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(stat.parent.name))
        out, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the server's processes (those alive now)."""
        used = [cpu_seconds(pid) for pid in self.pids()]
        return None if used[0] is None else sum(u for u in used if u is not None)

    def peak_rss_mb(self) -> float | None:
        """Sum of the peak RSS (VmHWM) of the server's processes (shared pages counted in each)."""
        peaks = [peak_rss_mb(pid) for pid in self.pids()]
        return None if peaks[0] is None else round(sum(p for p in peaks if p is not None), 1)

    def rss_by_process(self) -> dict[str, float]:
        """Peak RSS (MB) of each process of the tree, by a short name of its command."""
        out: dict[str, float] = {}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                name = _process_label([a.decode(errors="replace") for a in argv if a])
                peak = peak_rss_mb(pid)
                if peak is not None:
                    key, k = name, 2
                    while key in out:
                        key, k = f"{name} #{k}", k + 1
                    out[key] = round(peak, 1)
        return out

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, path: str = "/ready") -> float:

        deadline = time.monotonic() + READY_TIMEOUT_S
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}; log:\n"
                        + self.log_path.read_text()[-3000:]
                    )
                try:
                    if http.get(self.base + path).status_code == 200:
                        self.ready_s = time.perf_counter() - self.started
                        return self.ready_s
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT_S} s")

    def pause(self) -> None:
        """SIGSTOP every process of the server (a no-op when paused already)."""
        if not self._paused:
            self._paused = self.pids()
            self._signal_all(self._paused, signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT what :meth:`pause` stopped."""
        if self._paused:
            self._signal_all(self._paused, signal.SIGCONT)
            self._paused = []

    @staticmethod
    def _signal_all(pids: list[int], sig: signal.Signals) -> None:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def stop(self) -> None:
        self.resume()
        tree = self.pids() if self.process_tree and self.proc.poll() is None else []
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            if self.proc.poll() is not None:
                break
            if self.process_tree:  # the whole session this server started
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        # Processes of the tree that left its session (BentoML's workers do) or outlived it.
        leftovers = [pid for pid in tree if pid != self.proc.pid and _alive(pid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in leftovers:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and any(_alive(p) for p in leftovers):
                time.sleep(0.1)
        self._log.close()

    def thread_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each thread of the server, by thread name."""
        out: dict[str, float] = {}
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                name = (task / "comm").read_text().strip()
                if task.name == str(self.pid):
                    name = "event loop (main thread)"
                elif name == "python" or name.startswith("python"):
                    name = "other threads (decoding, PNG, ...)"
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                out[name] = out.get(name, 0.0) + used
        return out

    @contextlib.contextmanager
    def profiled(self, out: Path, seconds: float) -> Iterator[None]:
        """Sample this server with py-spy for ``seconds``: the thread holding the GIL only
        (``--gil``), so the samples show where the Python time goes; collapsed stacks to
        ``out``."""
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(self.pid),
                "--duration",
                str(max(1, round(seconds))),
                "--rate",
                "250",
                "--nonblocking",
                "--gil",
                "--format",
                "raw",
                "-o",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(0.5)  # let it attach
            yield
        finally:
            try:
                spy.wait(seconds + 30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(10)


@contextlib.contextmanager
def running(server: Server, ready_path: str = "/ready") -> Iterator[Server]:
    try:
        server.wait_ready(ready_path)
        yield server
    finally:
        server.stop()


def gan_serve(name: str, checkpoint: Path, logdir: Path, settings: dict[str, str]) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GAN_")}
    env.update(settings)  # the service's defaults otherwise, JSON access log included
    argv = [sys.executable, "-m", "service.cli", "--checkpoint", str(checkpoint)]
    argv += ["--host", HOST, "--port", str(port)]
    return Server(name, argv, env, logdir, port)


# ------------------------------------------------------------------------------------------
# Requests and the load client
# ------------------------------------------------------------------------------------------


@dataclass
class RequestSpec:
    """One request, encoded once (so the client spends its time sending, not encoding)."""

    path: str
    body: bytes
    content_type: str
    images: int  # images per request


def score_spec(pngs: list[bytes]) -> RequestSpec:

    files = [("files", (f"d{i}.png", png, "image/png")) for i, png in enumerate(pngs)]
    req = httpx.Request("POST", "http://x/score", files=files)
    return RequestSpec("/score", req.read(), req.headers["content-type"], len(pngs))


def generate_spec(n: int, fmt: str = "grid") -> RequestSpec:
    body = json.dumps({"n": n, "seed": 1234, "format": fmt}).encode()
    return RequestSpec("/generate", body, "application/json", n)


def sample_pngs(checkpoint: Path, count: int) -> list[bytes]:
    """``count`` 28x28 PNGs drawn by the checkpoint's own generator (realistic uploads)."""
    from gan.checkpoint import load_checkpoint
    from gan.io import encode_pngs
    from gan.sampling import sample

    ckpt = load_checkpoint(checkpoint)
    mc = ckpt.model_config
    return encode_pngs(
        sample(ckpt.generator, mc.z_dim, seed=7, n=count, num_classes=mc.num_classes)
    )


@dataclass
class LoadResult:
    scenario: str
    server: str
    concurrency: int
    images_per_request: int
    seconds: float
    requests_ok: int
    req_s: float
    images_s: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]
    peak_rss_mb: float | None = None
    ready_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _percentile(sorted_ms: list[float], q: float) -> float | None:
    if not sorted_ms:
        return None
    k = min(len(sorted_ms) - 1, max(0, round(q / 100.0 * (len(sorted_ms) - 1))))
    return round(sorted_ms[k], 2)


async def _drive(
    base: str,
    path: str,
    spec: RequestSpec,
    concurrency: int,
    seconds: float,
    warmup_s: float,
) -> tuple[float, list[float], Counter[str]]:

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Content-Type": spec.content_type}
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT_S) as client:

        async def one(record: bool) -> None:
            start = time.perf_counter()
            try:
                r = await client.post(path, content=spec.body, headers=headers)
            except httpx.HTTPError as exc:
                if record:
                    statuses[type(exc).__name__] += 1
                await asyncio.sleep(0.05)
                return
            elapsed = time.perf_counter() - start
            if record:
                statuses[str(r.status_code)] += 1
                if 200 <= r.status_code < 300:
                    latencies.append(elapsed * 1000.0)
            if r.status_code == 503:  # back off as the server asks, at most 1 s
                with contextlib.suppress(ValueError):
                    await asyncio.sleep(min(1.0, float(r.headers.get("Retry-After", "1"))))

        async def client_loop(until: float, record: bool) -> None:
            for _ in range(MAX_REQUESTS_PER_CLIENT):
                if time.perf_counter() >= until:
                    return
                await one(record)

        if warmup_s > 0:
            until = time.perf_counter() + warmup_s
            await asyncio.gather(*(client_loop(until, False) for _ in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(start + seconds, True) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, latencies, statuses


def _event_loop_runner() -> Any:
    try:
        import uvloop

        return uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.run


def run_load(
    server: Server,
    scenario: str,
    spec: RequestSpec,
    concurrency: int,
    seconds: float,
    warmup_s: float = 0.5,
) -> LoadResult:
    server_cpu0, client_cpu0 = server.cpu_seconds(), time.process_time()
    elapsed, latencies, statuses = _event_loop_runner()(
        _drive(server.base, server.route(spec.path), spec, concurrency, seconds, warmup_s)
    )
    server_cpu1, client_cpu1 = server.cpu_seconds(), time.process_time()
    total = elapsed + warmup_s
    cpu = {
        "server_cpu_pct": None
        if server_cpu0 is None or server_cpu1 is None
        else round(100 * (server_cpu1 - server_cpu0) / total),
        "client_cpu_pct": round(100 * (client_cpu1 - client_cpu0) / total),
    }
    ok = len(latencies)
    lat = sorted(latencies)
    unexpected = set(statuses) - {"200", "503"}
    if unexpected:  # show what the server said about it
        lines = server.log_path.read_text(errors="replace").splitlines()
        errors = [
            line
            for line in lines
            if '"level": "ERROR"' in line or "[ERROR]" in line or "Traceback" in line
        ]
        print(f"{server.name}: unexpected {sorted(unexpected)}; server errors: {errors[-5:]}")
    return LoadResult(
        scenario=scenario,
        server=server.name,
        concurrency=concurrency,
        images_per_request=spec.images,
        seconds=round(elapsed, 2),
        requests_ok=ok,
        req_s=round(ok / elapsed, 1),
        images_s=round(ok * spec.images / elapsed, 1),
        p50_ms=_percentile(lat, 50),
        p95_ms=_percentile(lat, 95),
        p99_ms=_percentile(lat, 99),
        statuses=dict(sorted(statuses.items())),
        peak_rss_mb=server.peak_rss_mb(),
        ready_s=None if server.ready_s is None else round(server.ready_s, 2),
        extra=cpu,
    )


# ------------------------------------------------------------------------------------------
# Scenarios in rounds and the report rows
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerScenario:
    scenario: str
    spec: RequestSpec
    concurrency: int


def rotated_rounds(
    servers: dict[str, Server],
    scenarios: list[PeerScenario],
    rounds: int,
    seconds: float,
    *,
    pause_others: bool = False,
) -> list[LoadResult]:
    """Every scenario on every server (named by its key), ``rounds`` times, the servers' order
    rotated per round so that drifts in the machine's speed hit all alike; rows printed as run.

    ``pause_others``: while one server is measured, every other one is stopped (SIGSTOP on each
    process of its tree, SIGCONT after), so that a server that keeps polling while idle
    (LitServe's workers poll their queues every millisecond; Ray's processes keep heartbeats)
    takes no CPU from the one under load. Idle, LitServe and Ray Serve took about 30 % of this
    2-core machine together."""
    names = list(servers)
    results: list[LoadResult] = []
    print(HEADER)
    for rnd in range(rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for sc in scenarios:
            for name in order:
                if pause_others:
                    for other, srv in servers.items():
                        (srv.resume if other == name else srv.pause)()
                    time.sleep(PAUSE_SETTLE_S)
                r = run_load(servers[name], sc.scenario, sc.spec, sc.concurrency, seconds)
                r.server = name
                results.append(r)
                print(fmt_row(r), flush=True)
    if pause_others:
        for srv in servers.values():
            srv.resume()
    return results


#: After resuming a paused server, before its cell's warm-up (its timers and sockets catch up).
PAUSE_SETTLE_S = 0.3


def fmt_row(r: LoadResult) -> str:
    codes = " ".join(f"{k}:{v}" for k, v in r.statuses.items())
    rss = "-" if r.peak_rss_mb is None else f"{r.peak_rss_mb:.0f}"
    cpu = f"{r.extra.get('server_cpu_pct', '-')}/{r.extra.get('client_cpu_pct', '-')}"
    return (
        f"{r.scenario:<14} {r.server:<14} {r.concurrency:>4} {r.images_per_request:>4} "
        f"{r.req_s:>8.1f} {r.images_s:>9.1f} {r.p50_ms or 0:>8.1f} {r.p95_ms or 0:>8.1f} "
        f"{r.p99_ms or 0:>8.1f} {rss:>6} {cpu:>9}  {codes}"
    )


HEADER = (
    f"{'scenario':<14} {'server':<14} {'conc':>4} {'img':>4} {'req/s':>8} {'img/s':>9} "
    f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'RSS MB':>6} {'CPU% s/c':>9}  statuses"
)


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def machine() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
