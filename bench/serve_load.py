"""Load benchmark of ``gan-serve`` over loopback, side by side with its baselines.

One run (``make bench-serve`` or ``python bench/serve_load.py``) measures, on this machine:

1. raw in-process G and D forwards (no HTTP) at the batch sizes the HTTP scenarios use;
2. the HTTP floor: a minimal FastAPI endpoint defined here (not in the product) that accepts the
   same multipart upload, decodes it with Pillow and returns a constant, run by uvicorn the same
   way as gan-serve; for a 28x28 model HTTP dominates, so ``/score`` over the floor is the honest
   measure of the service's own overhead;
3. the real ``gan-serve`` process with batching on (the default settings) and off
   (``GAN_MAX_BATCH=1``): single-image ``/score`` at several concurrencies (the plot), ``/score``
   with 64 images per request, ``/generate`` with ``n=64``, and an overload burst above
   ``GAN_QUEUE_SIZE`` (503s with Retry-After, then recovery);
4. the same single-image ``/score`` on a 4x wider model (g_width = d_width = 256 at 28 px,
   random weights: the timing does not depend on them), where the forward dominates.

Clients are closed-loop: each of N clients (one async httpx client, one connection each) sends a
request, waits for the answer and sends the next, for T seconds (bounded in time and count; a
503 is retried after its Retry-After, at most 1 s). Reported: req/s, images/s, p50/p95/p99
latency of the 2xx answers, the count of every status, the server's peak RSS (VmHWM) and the time
from process start to a 200 on ``/ready``. Everything listens on 127.0.0.1 only; servers are
stopped with SIGTERM (then SIGKILL) whatever happens.

With ``--peers bentoml,torchserve`` it runs the peer comparison instead: the same checkpoint
served by gan-serve, by BentoML 1.4 (adaptive batching) and by TorchServe 0.12 (batch 64, 2 ms
delay), from bench/peers/ in their own virtual environments (bench/peers/setup.sh); the same client
drives single-image ``/score`` at 1, 8 and 32 clients, ``/generate`` n=1 at 8 clients and n=64 at
``--batch-clients``, ``--rounds`` rounds of ``--seconds`` per cell with the servers' order rotated
each round; printed: req/s, p50/p99, the peak RSS of each server's process tree, and the ratios
gan-serve / peer (medians of the per-round ratios) against their targets.

Finally (unless ``--no-profile``) the single-image ``/score`` load runs once more with py-spy (a
dev tool, ``pip install py-spy``) attached to the server, and the share of its samples per part
(forward, event loop, multipart parsing, decoding, response, ...) is printed. Results go to
stdout, ``--json`` and the ``--plot`` PNG (docs/serve_load.png by default).

The server processes, the load client and the report rows are ``bench/loadkit.py``'s (shared
with ``bench/serve_variants.py``); this script holds the scenarios, the peers and its CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadkit import (  # noqa: E402
    HEADER,
    HOST,
    READY_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    LoadResult,
    PeerScenario,
    RequestSpec,
    Server,
    fmt_row,
    free_port,
    free_ports,
    gan_serve,
    generate_spec,
    machine,
    median,
    rotated_rounds,
    run_floor_server,
    run_load,
    running,
    sample_pngs,
    score_spec,
)

# ------------------------------------------------------------------------------------------
# The HTTP floor (bench.loadkit.floor_app), run by this script's --floor-server mode
# ------------------------------------------------------------------------------------------


def floor_server(logdir: Path) -> Server:
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve()), "--floor-server", str(port)]
    return Server("floor", argv, dict(os.environ), logdir, port)


# ------------------------------------------------------------------------------------------
# Raw in-process forwards, checkpoints and test images
# ------------------------------------------------------------------------------------------


class RawForward:
    """G(z) and D(x) of a checkpoint in this process (eval, inference_mode): images/s."""

    def __init__(self, checkpoint: Path, threads: int) -> None:
        import torch

        from gan.checkpoint import load_checkpoint

        if threads > 0:
            torch.set_num_threads(threads)
        ckpt = load_checkpoint(checkpoint)
        self.nets = {"generator": ckpt.generator.eval(), "discriminator": ckpt.discriminator.eval()}
        self.z_dim = ckpt.model_config.z_dim

    def images_per_s(self, name: str, batch: int, min_seconds: float = 1.0) -> float:
        import torch

        from gan.models import to_model_range

        gen = torch.Generator().manual_seed(batch)
        with torch.inference_mode():
            if name == "generator":
                inp = torch.randn(batch, self.z_dim, generator=gen)
            else:
                pixels = torch.randint(0, 256, (batch, 1, 28, 28), generator=gen)
                inp = to_model_range(pixels.to(torch.uint8))
            net = self.nets[name]
            for _ in range(3):
                net(inp)
            reps, start = 0, time.perf_counter()
            while reps < 10_000 and (reps < 5 or time.perf_counter() - start < min_seconds):
                net(inp)
                reps += 1
            return round(batch * reps / (time.perf_counter() - start), 1)


def raw_forward(
    checkpoint: Path, batch_sizes: list[int], threads: int, min_seconds: float = 1.0
) -> dict[str, dict[int, float]]:
    """images/s of G(z) and D(x) alone, per batch size."""
    raw = RawForward(checkpoint, threads)
    return {
        name: {b: raw.images_per_s(name, b, min_seconds) for b in batch_sizes}
        for name in ("generator", "discriminator")
    }


def wide_checkpoint(path: Path, width: int = 256) -> Path:
    from gan.checkpoint import build_config, save_checkpoint
    from gan.models import ModelConfig, build_models

    cfg = ModelConfig(resolution=28, channels=1, z_dim=64, g_width=width, d_width=width)
    g, d = build_models(cfg, seed=0)
    config = build_config(cfg, step=0, seed=0, dataset={"name": f"bench-width{width}"})
    return save_checkpoint(path, g.eval(), d.eval(), config)


def unconditional_stand_in(checkpoint: Path, tmpdir: Path) -> tuple[Path, str | None]:
    """The checkpoint itself, or for a class-conditional one an unconditional checkpoint of the
    same size in ``tmpdir`` (random weights: the timing does not depend on them) and a note."""
    from gan.checkpoint import read_checkpoint_config

    mc = read_checkpoint_config(checkpoint).model
    if not mc.num_classes:
        return checkpoint, None
    note = (
        f"{checkpoint} is class-conditional; every server got an unconditional checkpoint "
        "of the same size (random weights: the timing does not depend on them)"
    )
    return wide_checkpoint(tmpdir / "unconditional", width=mc.g_width), note


# ------------------------------------------------------------------------------------------
# Peers: the same checkpoint served by BentoML, TorchServe, LitServe and Ray Serve (--peers)
# ------------------------------------------------------------------------------------------

PEERS_DIR = ROOT / "bench" / "peers"
PEERS = ("bentoml", "torchserve", "litserve", "rayserve")
#: The peer run's req/s targets, gan-serve / peer, per scenario.
PEER_TARGETS = {"bentoml": 1.5, "torchserve": 1.0, "litserve": 1.0, "rayserve": 1.0}
READY_PATHS = {
    "gan-serve": "/ready",
    "bentoml": "/readyz",
    "torchserve": "/ping",
    "litserve": "/health",
    "rayserve": "/-/healthz",
}


def peers_venv() -> Path:
    """Where bench/peers/setup.sh puts the peers' virtual environments (PEERS_VENV)."""
    return Path(os.environ.get("PEERS_VENV") or ROOT / "bench" / ".peers-venv")


def setup_peers(peers: list[str]) -> None:
    """Create (or keep, when up to date) each peer's own virtual environment."""
    env = {**os.environ, "PEERS_VENV": str(peers_venv())}
    subprocess.run(["bash", str(PEERS_DIR / "setup.sh"), *peers], check=True, env=env)


def _peer_env(checkpoint: Path, threads: int, venv: Path) -> dict[str, str]:
    """The peers' environment: ours, less GAN_* and Python/venv variables, plus theirs."""
    drop = ("GAN_", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(drop)}
    env.update(
        {
            "GAN_PEER_CHECKPOINT": str(checkpoint.resolve()),
            "GAN_PEER_TORCH_THREADS": str(threads),
            "GAN_REPO_ROOT": str(ROOT),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def bentoml_server(checkpoint: Path, logdir: Path, threads: int) -> Server:
    """bench/peers/bentoml_service.py under ``bentoml serve`` (one worker process)."""
    venv = peers_venv() / "bentoml"
    port = free_port()
    env = _peer_env(checkpoint, threads, venv)
    env["BENTOML_HOME"] = str(logdir / "bentoml-home")
    env["BENTOML_DO_NOT_TRACK"] = "True"  # no usage reports (no network here anyway)
    argv = [str(venv / "bin" / "bentoml"), "serve", "bentoml_service:GanPeer"]
    argv += ["--working-dir", str(PEERS_DIR), "--host", HOST, "--port", str(port)]
    return Server("bentoml", argv, env, logdir, port, process_tree=True)


def litserve_server(checkpoint: Path, logdir: Path, threads: int) -> Server:
    """bench/peers/litserve_service.py: a LitServer with one LitAPI per endpoint."""
    venv = peers_venv() / "litserve"
    port = free_port()
    env = _peer_env(checkpoint, threads, venv)
    argv = [str(venv / "bin" / "python"), str(PEERS_DIR / "litserve_service.py")]
    argv += ["--host", HOST, "--port", str(port)]
    return Server("litserve", argv, env, logdir, port, cwd=PEERS_DIR, process_tree=True)


def rayserve_server(checkpoint: Path, logdir: Path, threads: int) -> Server:
    """bench/peers/rayserve_service.py: a local Ray cluster, one Serve deployment."""
    venv = peers_venv() / "rayserve"
    port = free_port()
    env = _peer_env(checkpoint, threads, venv)
    # Ray's session folder (logs, sockets) inside the benchmark's temporary folder; no usage
    # reports (there is no network here anyway).
    env["RAY_TMPDIR"] = str(logdir / "ray")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    argv = [str(venv / "bin" / "python"), str(PEERS_DIR / "rayserve_service.py")]
    argv += ["--host", HOST, "--port", str(port)]
    return Server("rayserve", argv, env, logdir, port, cwd=PEERS_DIR, process_tree=True)


def torchserve_server(checkpoint: Path, logdir: Path, threads: int) -> Server:
    """bench/peers/torchserve_handler.py archived as models ``score`` and ``generate``, served
    by ``torchserve --foreground`` with bench/peers/config.properties (ports filled in)."""
    venv = peers_venv() / "torchserve"
    home = logdir / "torchserve"
    store, tmp, logs = home / "model-store", home / "tmp", home / "logs"
    for folder in (store, tmp, logs):
        folder.mkdir(parents=True, exist_ok=True)
    env = _peer_env(checkpoint, threads, venv)
    for name in ("score", "generate"):
        subprocess.run(
            [
                str(venv / "bin" / "torch-model-archiver"),
                "--model-name",
                name,
                "--version",
                "1.0",
                "--handler",
                str(PEERS_DIR / "torchserve_handler.py"),
                "--extra-files",
                str(PEERS_DIR / "common.py"),
                "--export-path",
                str(store),
                "--force",
            ],
            check=True,
            env=env,
            cwd=home,
        )
    inference, management, metrics, grpc_i, grpc_m, worker = free_ports(6)
    fields = {
        "INFERENCE_PORT": inference,
        "MANAGEMENT_PORT": management,
        "METRICS_PORT": metrics,
        "GRPC_INFERENCE_PORT": grpc_i,
        "GRPC_MANAGEMENT_PORT": grpc_m,
        "WORKER_PORT": worker,
        "TMPDIR": tmp,
        "MODEL_STORE": store,
    }
    config = (PEERS_DIR / "config.properties").read_text()
    for key, value in fields.items():
        config = config.replace(f"@{key}@", str(value))
    (home / "config.properties").write_text(config)
    # TMPDIR: the launcher's pid file (one per machine otherwise); LOG_LOCATION: its logs.
    env.update({"TMPDIR": str(tmp), "LOG_LOCATION": str(logs), "METRICS_LOCATION": str(logs)})
    argv = [str(venv / "bin" / "torchserve"), "--start", "--foreground", "--ncs"]
    argv += ["--disable-token-auth", "--model-store", str(store)]
    argv += ["--ts-config", str(home / "config.properties")]
    routes = {"/score": "/predictions/score", "/generate": "/predictions/generate"}
    return Server(
        "torchserve", argv, env, logdir, inference, cwd=home, routes=routes, process_tree=True
    )


def wait_serving(server: Server, specs: list[RequestSpec]) -> None:
    """Until every request answers 200 (TorchServe says ready before its workers are)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT_S) as http:
        for spec in specs:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    r = http.post(
                        server.route(spec.path),
                        content=spec.body,
                        headers={"Content-Type": spec.content_type},
                    )
                    if r.status_code == 200:
                        break
                if server.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{server.name}: {spec.path} never answered 200; log:\n"
                        + server.log_path.read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.2)
    server.ready_s = time.perf_counter() - server.started


def _find_logit(data: Any) -> float | None:
    """The first ``logit`` in a JSON answer, whatever its nesting."""
    if isinstance(data, dict):
        if isinstance(data.get("logit"), (int, float)):
            return float(data["logit"])
        data = list(data.values())
    if isinstance(data, list):
        for item in data:
            found = _find_logit(item)
            if found is not None:
                return found
    return None


def outputs_of(server: Server, specs: dict[str, RequestSpec]) -> dict[str, Any]:
    """Each request's answer: PNG bytes for /generate, D's logit for /score."""
    out: dict[str, Any] = {}
    with httpx.Client(base_url=server.base, timeout=REQUEST_TIMEOUT_S) as http:
        for name, spec in specs.items():
            r = http.post(
                server.route(spec.path),
                content=spec.body,
                headers={"Content-Type": spec.content_type},
            )
            r.raise_for_status()
            out[name] = _find_logit(r.json()) if spec.path == "/score" else r.content
    return out


def equivalence(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """Whether a peer answers as gan-serve does (same PNG bytes, same logit)."""
    report: dict[str, Any] = {}
    for name, value in ours.items():
        other = theirs.get(name)
        if isinstance(value, bytes):
            report[name] = "identical bytes" if other == value else "DIFFERENT bytes"
        elif isinstance(value, float) and isinstance(other, float):
            report[name] = f"|logit diff| {abs(value - other):.2g}"
        else:
            report[name] = f"no answer to compare ({other!r})"
    return report


def peer_comparison(args: argparse.Namespace, peers: list[str]) -> int:
    """gan-serve and the peers on the same checkpoint, same client, rotated rounds."""
    from service.settings import Settings

    threads = args.torch_threads if args.torch_threads is not None else Settings().torch_threads
    started = time.perf_counter()
    if args.peers_setup:
        setup_peers(peers)
    settings_env = {"GAN_TORCH_THREADS": str(threads)}
    names = ["gan-serve", *peers]
    with tempfile.TemporaryDirectory(prefix="serve-peers-") as tmp, contextlib.ExitStack() as stack:
        tmpdir = Path(tmp)
        checkpoint = args.checkpoint
        if not (checkpoint / "config.json").is_file():
            print(f"note: {checkpoint} has no checkpoint: using a random one of the default config")
            checkpoint = wide_checkpoint(tmpdir / "default", width=64)
        checkpoint, note = unconditional_stand_in(checkpoint, tmpdir)
        if note:
            print(f"note: {note} (the peers serve G(z) and D(x) only)")
        info = machine()
        print(f"machine: {info}")
        pngs = sample_pngs(checkpoint, 1)
        one = score_spec(pngs)
        gen1, gen64 = generate_spec(1, "png"), generate_spec(64, "grid")
        scenarios = [
            PeerScenario("score-1", one, 1),
            PeerScenario("score-1", one, 8),
            PeerScenario("score-1", one, 32),
            PeerScenario("generate-1", gen1, 8),
            PeerScenario("generate-64", gen64, args.batch_clients),
        ]
        print(
            f"servers: gan-serve (defaults, GAN_TORCH_THREADS={threads}), "
            + ", ".join(peers)
            + f" ({threads} torch thread(s), batches of <= 64, 2 ms delay); "
            f"{args.rounds} round(s) of {args.seconds:g} s per cell, order rotated per round"
            + ("" if args.no_pause else "; the servers not under load paused (SIGSTOP)")
        )
        makers = {
            "bentoml": bentoml_server,
            "torchserve": torchserve_server,
            "litserve": litserve_server,
            "rayserve": rayserve_server,
        }
        servers: dict[str, Server] = {}
        # All servers are started at once and take turns; the ones not under load are paused
        # (SIGSTOP) unless --no-pause: LitServe and Ray Serve poll while idle.
        gan = gan_serve("gan-serve", checkpoint, tmpdir, settings_env)
        servers["gan-serve"] = stack.enter_context(running(gan, READY_PATHS["gan-serve"]))
        for name in peers:
            srv = makers[name](checkpoint, tmpdir, threads)
            servers[name] = stack.enter_context(running(srv, READY_PATHS[name]))
        for srv in servers.values():
            wait_serving(srv, [one, gen1, gen64])
        print(
            "ready (s from start to 200 on every request): "
            + ", ".join(f"{n} {servers[n].ready_s:.1f}" for n in names)
        )
        specs = {"generate n=1 png": gen1, "generate n=64 grid": gen64, "score": one}
        ours = outputs_of(servers["gan-serve"], specs)
        same: dict[str, dict[str, Any]] = {}
        for name in peers:
            same[name] = equivalence(ours, outputs_of(servers[name], specs))
            print(f"answers of {name} vs gan-serve: {same[name]}")
        results = rotated_rounds(
            servers, scenarios, args.rounds, args.seconds, pause_others=not args.no_pause
        )
        rss = {name: servers[name].peak_rss_mb() for name in names}
        rss_parts = {name: servers[name].rss_by_process() for name in names}
        for srv in servers.values():
            srv.stop()
        retries = 0
        if "bentoml" in servers:  # bench/peers/bentoml_service.py logs each one
            log = servers["bentoml"].log_path.read_text(errors="replace")
            retries = log.count("g_forward connection dropped")

    def cells(name: str, sc: PeerScenario) -> list[LoadResult]:
        return [
            r
            for r in results
            if (r.server, r.scenario, r.concurrency) == (name, sc.scenario, sc.concurrency)
        ]

    print(f"\nmedians over {args.rounds} round(s): req/s (p99 ms)")
    print(f"{'scenario':<14} {'clients':>7}  " + "  ".join(f"{n:>20}" for n in names))
    for sc in scenarios:
        row = []
        for name in names:
            rs = cells(name, sc)
            rps = median([r.req_s for r in rs])
            p99 = median([r.p99_ms if r.p99_ms is not None else float("nan") for r in rs])
            row.append(f"{rps:>9.1f} ({p99:>6.1f} ms)")
        print(f"{sc.scenario:<14} {sc.concurrency:>7}  " + "  ".join(f"{c:>20}" for c in row))

    print(
        f"\nratios gan-serve / peer (median of the {args.rounds} per-round ratios; req/s target, "
        "p99 target <= 1):"
    )
    ratios: dict[str, dict[str, float]] = {}
    verdicts: dict[str, bool] = {}
    for sc in scenarios:
        ours_runs = cells("gan-serve", sc)
        for name in peers:
            theirs = cells(name, sc)
            rps = median(
                [a.req_s / b.req_s for a, b in zip(ours_runs, theirs, strict=True) if b.req_s]
            )
            p99 = median(
                [
                    a.p99_ms / b.p99_ms
                    for a, b in zip(ours_runs, theirs, strict=True)
                    if a.p99_ms is not None and b.p99_ms
                ]
            )
            key = f"{sc.scenario} c={sc.concurrency} vs {name}"
            ratios[key] = {"req_s": round(rps, 2), "p99": round(p99, 2)}
            need = PEER_TARGETS[name]
            ok_rps, ok_p99 = rps >= need, p99 <= 1.0
            verdicts[f"{key}: req/s >= {need}"] = ok_rps
            verdicts[f"{key}: p99 <= 1"] = ok_p99
            print(
                f"  {key:<36} req/s {rps:>5.2f} (>= {need}) {'ok' if ok_rps else 'MISS':<4}"
                f"  p99 {p99:>5.2f} {'ok' if ok_p99 else 'MISS'}"
            )
    print("\npeak RSS of each server's process tree (sum of the processes' VmHWM, MB):")
    for name in names:
        parts = ", ".join(f"{k} {v:.0f}" for k, v in rss_parts[name].items())
        print(f"  {name:<11} {rss[name] or 0:>6.0f}  ({parts})")
    ours_rss = rss["gan-serve"] or 0.0
    if args.rss_baseline_mb:
        ok = ours_rss <= args.rss_baseline_mb
        verdicts[f"gan-serve peak RSS <= {args.rss_baseline_mb:g} MB"] = ok
        print(
            f"  gan-serve peak RSS {ours_rss:.0f} <= baseline {args.rss_baseline_mb:g} MB: "
            f"{'ok' if ok else 'MISS'}"
        )
    if "bentoml" in peers:
        print(
            f"bentoml: {retries} GanPeer -> GanGenerator calls retried after a dropped "
            "connection (BentoML issue #4971)"
        )
    print(f"total time {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "peers": peers,
                    "bentoml_internal_retries": retries,
                    "torch_threads": threads,
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "equivalence": same,
                    "results": [asdict(r) for r in results],
                    "ratios": ratios,
                    "verdicts": verdicts,
                    "peak_rss_mb": rss,
                    "peak_rss_mb_by_process": rss_parts,
                },
                indent=1,
            )
        )
    return 0


# ------------------------------------------------------------------------------------------
# Profile summary (py-spy raw / collapsed stacks)
# ------------------------------------------------------------------------------------------

# A sample whose innermost Python frame is the event loop's run() is time spent in uvloop's and
# httptools' C code (socket reads and writes, HTTP parsing, callbacks): "event loop (C)".
LOOP_LEAF = re.compile(r"^(Runner\.run|asyncio_run|Server\.run|run_until_complete) ")
# Otherwise the first match from the leaf up decides the category of a sample.
CATEGORIES: list[tuple[str, re.Pattern[str]]] = [
    ("forward (torch)", re.compile(r"torch/|_run_batch|_score_sync|_generate_sync")),
    ("PNG encoding", re.compile(r"encode_png|PngImagePlugin.*_save|_grid_png|_pngs")),
    ("image decoding + conversion", re.compile(r"decode_image|to_model_pixels|PIL/")),
    ("multipart parsing", re.compile(r"multipart|formparsers|UploadFile|datastructures")),
    ("response (pydantic + JSON)", re.compile(r"pydantic|json/|JSONResponse|model_dump|render")),
    ("logging + metrics", re.compile(r"logging/|logconfig|prometheus_client")),
    ("latents (seeds)", re.compile(r"latents\.py")),
    ("batching (scheduler)", re.compile(r"service/batching")),
    ("thread hand-offs", re.compile(r"concurrent/|threading|anyio/|asyncio/")),
    ("HTTP protocol (uvicorn, Python part)", re.compile(r"uvicorn/|httptools|h11")),
    ("middleware, routing, endpoint code", re.compile(r"service/|starlette/|fastapi/|uuid")),
]


def summarize_profile(path: Path) -> dict[str, float]:
    """Share (%) of the server's non-idle samples per category."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        total += int(n)
        if LOOP_LEAF.match(frames[-1]):
            counts["event loop (uvloop + httptools, C)"] += int(n)
            continue
        for frame in reversed(frames):
            name = next((cat for cat, rx in CATEGORIES if rx.search(frame)), None)
            if name is not None:
                counts[name] += int(n)
                break
        else:
            counts["other"] += int(n)
    return {k: round(100.0 * v / total, 1) for k, v in counts.most_common()} if total else {}


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------


def plot(results: list[LoadResult], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for server, style in (("floor", "k--o"), ("batching-on", "b-o"), ("batching-off", "r-s")):
        runs: dict[int, list[LoadResult]] = {}
        for r in results:
            if r.scenario == "score-1" and r.server == server:
                runs.setdefault(r.concurrency, []).append(r)
        if not runs:
            continue
        xs = sorted(runs)  # medians where a point was measured more than once
        ax1.plot(xs, [median([r.req_s for r in runs[c]]) for c in xs], style, label=server)
        p99 = [median([r.p99_ms or float("nan") for r in runs[c]]) for c in xs]
        ax2.plot(xs, p99, style, label=server)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients (single-image /score)")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax1.set_ylabel("requests / s")
    ax1.set_ylim(bottom=0)
    ax2.set_ylabel("p99 latency (ms)")
    ax2.set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "mnist")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per load run")
    p.add_argument("--concurrency", default="1,4,16,32,64", help="single-image /score sweep")
    p.add_argument("--rounds", type=int, default=5, help="rounds of the c=32 and wide comparisons")
    p.add_argument("--sweep-rounds", type=int, default=3, help="rounds of the other comparisons")
    p.add_argument("--batch-clients", type=int, default=4, help="clients for 64-image requests")
    p.add_argument("--overload-clients", type=int, default=128)
    p.add_argument("--wide-width", type=int, default=256, help="0 skips the wide-model runs")
    p.add_argument("--torch-threads", type=int, default=None, help="GAN_TORCH_THREADS to use")
    p.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="profile the server under single-image /score with py-spy (skipped without it)",
    )
    p.add_argument(
        "--peers",
        default="",
        metavar="LIST",
        help="instead of the default run: compare gan-serve with these peers serving the same "
        "checkpoint (comma-separated: bentoml,torchserve,litserve,rayserve), --rounds rounds of --seconds per cell",
    )
    p.add_argument(
        "--rss-baseline-mb",
        type=float,
        default=0.0,
        help="with --peers: check that gan-serve's peak RSS stays at or below this (MB; 0: "
        "report only). Take it from a peer run of the code before a change.",
    )
    p.add_argument(
        "--no-pause",
        action="store_true",
        help="with --peers: leave the servers not under load running (by default they are "
        "paused with SIGSTOP while another one is measured: LitServe and Ray Serve poll while idle)",
    )
    p.add_argument(
        "--peers-setup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run bench/peers/setup.sh first (creates the peers' venvs; a no-op when present)",
    )
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "serve_load.png")
    p.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.floor_server is not None:
        run_floor_server(args.floor_server)
        return 0
    if args.peers:
        peers = [name.strip() for name in args.peers.split(",") if name.strip()]
        unknown = sorted(set(peers) - set(PEERS))
        if unknown:
            p.error(f"--peers: unknown {unknown}; known: {', '.join(PEERS)}")
        return peer_comparison(args, list(dict.fromkeys(peers)))

    from service.settings import Settings

    settings_env: dict[str, str] = {}
    if args.torch_threads is not None:
        settings_env["GAN_TORCH_THREADS"] = str(args.torch_threads)
    defaults = Settings(**({"torch_threads": args.torch_threads} if args.torch_threads else {}))
    threads = defaults.torch_threads
    sweep = sorted({int(c) for c in args.concurrency.split(",")} | {32})
    seconds = args.seconds
    started = time.perf_counter()
    results: list[LoadResult] = []
    notes: list[str] = []

    def show(r: LoadResult) -> LoadResult:
        results.append(r)
        print(fmt_row(r), flush=True)
        return r

    def runs_of(scenario: str, server: str, concurrency: int) -> list[float]:
        return [
            r.images_s
            for r in results
            if (r.scenario, r.server, r.concurrency) == (scenario, server, concurrency)
        ]

    def paired(scenario: str, a: str, b: str, concurrency: int) -> float:
        """Median over rounds of a/b, each round's runs taken back to back (this machine's
        speed drifts by tens of percent over minutes; within a round it mostly cancels)."""
        ra, rb = runs_of(scenario, a, concurrency), runs_of(scenario, b, concurrency)
        return round(median([x / y for x, y in zip(ra, rb, strict=True) if y]), 2)

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp, contextlib.ExitStack() as stack:
        tmpdir = Path(tmp)
        checkpoint = args.checkpoint
        if not (checkpoint / "config.json").is_file():
            notes.append(
                f"{checkpoint} has no checkpoint: used a randomly initialised one of the default "
                "config (g_width = d_width = 64; forward timings do not depend on the weights)"
            )
            checkpoint = wide_checkpoint(tmpdir / "default", width=64)
        checkpoint, note = unconditional_stand_in(checkpoint, tmpdir)
        if note:
            notes.append(f"{note} (the raw-forward baselines run G(z) and D(x) without labels)")
        info = machine()
        print(f"machine: {info}")
        print(
            f"gan-serve: default settings (GAN_TORCH_THREADS={threads}, GAN_MAX_BATCH="
            f"{defaults.max_batch}, GAN_MAX_DELAY_MS={defaults.max_delay_ms:g}, GAN_QUEUE_SIZE="
            f"{defaults.queue_size}); batching off: GAN_MAX_BATCH=1"
        )
        for note in notes:
            print(f"note: {note}")

        pngs = sample_pngs(checkpoint, 64)
        one = score_spec(pngs[:1])
        many = score_spec(pngs)
        gen64 = generate_spec(64)

        raw = raw_forward(checkpoint, [1, 64], threads)
        raw_default = raw_forward(checkpoint, [64], 0)
        print(f"raw in-process forwards, images/s, {threads} torch thread(s): {raw}")
        print(f"raw in-process forwards, images/s, torch's default threads: {raw_default}")

        # All three servers run at once (idle ones cost nothing) and take turns, so slow drifts
        # of this shared machine hit them alike.
        floor = stack.enter_context(running(floor_server(tmpdir)))
        off = stack.enter_context(
            running(
                gan_serve(
                    "batching-off", checkpoint, tmpdir, {**settings_env, "GAN_MAX_BATCH": "1"}
                )
            )
        )
        on = stack.enter_context(
            running(gan_serve("batching-on", checkpoint, tmpdir, settings_env))
        )
        print(HEADER)
        for c in sweep:  # each point: rounds of floor, off, on back to back
            for _ in range(args.rounds if c == 32 else args.sweep_rounds):
                for srv in (floor, off, on):
                    show(run_load(srv, "score-1", one, c, seconds))
        show(run_load(floor, "score-64", many, args.batch_clients, seconds))
        # 64 images per request against the raw forward at batch 64, measured right before.
        rawer = RawForward(checkpoint, threads)
        paired_raw: dict[str, list[float]] = {"score-64": [], "generate-64": []}
        for _ in range(args.sweep_rounds):
            for scenario, spec, net in (
                ("score-64", many, "discriminator"),
                ("generate-64", gen64, "generator"),
            ):
                raw_now = rawer.images_per_s(net, 64)
                r = show(run_load(on, scenario, spec, args.batch_clients, seconds))
                r.extra["raw_images_s"] = raw_now
                paired_raw[scenario].append(r.images_s / raw_now)
        burst = run_load(on, "overload", one, args.overload_clients, seconds, 0.0)
        after_burst = httpx.post(
            on.base + "/score", content=one.body, headers={"Content-Type": one.content_type}
        )
        burst.extra["status_after_burst"] = after_burst.status_code
        show(burst)
        for srv in (floor, off, on):
            srv.stop()

        wide_raw: dict[str, dict[int, float]] = {}
        if args.wide_width:
            wide = wide_checkpoint(tmpdir / "wide", args.wide_width)
            wide_raw = raw_forward(wide, [1, 16, 64], threads)
            print(f"raw wide-model forwards, images/s: {wide_raw}")
            w_off = stack.enter_context(
                running(gan_serve("wide-off", wide, tmpdir, {**settings_env, "GAN_MAX_BATCH": "1"}))
            )
            w_on = stack.enter_context(running(gan_serve("wide-on", wide, tmpdir, settings_env)))
            for _ in range(args.rounds):
                for srv in (w_on, w_off):
                    show(run_load(srv, "wide-score-1", one, 32, seconds))
            w_off.stop()
            w_on.stop()

        profile: dict[str, float] = {}
        per_request_us: dict[str, int] = {}
        spy = Path(sys.executable).parent / "py-spy"
        if args.profile and not spy.exists():
            print(f"profile: skipped, {spy} not found (pip install py-spy)")
        elif args.profile:
            prof = tmpdir / "profile.txt"
            with running(gan_serve("profiled", checkpoint, tmpdir, settings_env)) as srv:
                run_load(srv, "warm-up", one, 32, 1.0, 0.0)
                before = srv.thread_cpu()
                with srv.profiled(prof, seconds):
                    prof_run = show(run_load(srv, "score-1-prof", one, 32, seconds, 0.0))
                after = srv.thread_cpu()
            per_request_us = {
                name: round(1e6 * (after[name] - before.get(name, 0.0)) / prof_run.requests_ok)
                for name in after
                if prof_run.requests_ok and after[name] - before.get(name, 0.0) > 0
            }
            print(f"server CPU per request by thread (us): {per_request_us}")
            if prof.exists():
                profile = summarize_profile(prof)
                print(f"where the GIL-holding (Python) time goes, single-image /score: {profile}")
            else:
                print("profile: py-spy wrote nothing (is ptrace allowed here?)")

    checks = {
        "score-1 c=32: batching-on / floor >= 0.8": paired("score-1", "batching-on", "floor", 32),
        "score-1 c=32: batching-on / batching-off >= 1": paired(
            "score-1", "batching-on", "batching-off", 32
        ),
        "score-1 any c: min batching-on / batching-off >= 1": min(
            paired("score-1", "batching-on", "batching-off", c) for c in sweep
        ),
        "score-64: images/s / raw D@64 >= 0.7": round(median(paired_raw["score-64"]), 2),
        "generate-64: images/s / raw G@64 >= 0.7": round(median(paired_raw["generate-64"]), 2),
    }
    if args.wide_width:
        checks["wide score-1 c=32: on / off >= 2"] = paired(
            "wide-score-1", "wide-on", "wide-off", 32
        )
    limits = {">= 0.8": 0.8, ">= 1": 1.0, ">= 0.7": 0.7, ">= 2": 2.0}
    print(f"\nratios (side by side: median of {args.rounds} paired rounds where repeated; target):")
    verdicts: dict[str, bool] = {}
    for name, value in checks.items():
        need = next(v for k, v in limits.items() if name.endswith(k))
        verdicts[name] = value >= need
        print(f"  {name:<52} {value:>6}  {'ok' if value >= need else 'MISS'}")
    servers = [r for r in results if r.server != "floor"]
    ready = max((r.ready_s or 0.0) for r in servers)
    rss = max((r.peak_rss_mb or 0.0) for r in servers)
    print(
        f"  {'slowest ready after start <= 3 s':<52} {ready:>6}  {'ok' if ready <= 3 else 'MISS'}"
    )
    print(f"  {'largest peak RSS <= 500 MB':<52} {rss:>6.0f}  {'ok' if rss <= 500 else 'MISS'}")
    print(f"  overload burst: statuses {burst.statuses}, then /score -> {after_burst.status_code}")
    print(f"total time {time.perf_counter() - started:.0f} s")
    title = (
        f"single-image /score, {info['cores']} cores ({info['cpu']}), load client on the same "
        f"machine, {seconds:g} s per point"
    )
    plot(results, args.plot, title)
    print(f"plot: {args.plot}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "notes": notes,
                    "torch_threads": threads,
                    "raw": raw,
                    "raw_default_threads": raw_default,
                    "wide_raw": wide_raw,
                    "results": [asdict(r) for r in results],
                    "ratios": checks,
                    "verdicts": verdicts,
                    "ready_s_max": ready,
                    "peak_rss_mb_max": rss,
                    "profile": profile,
                    "cpu_per_request_us_by_thread": per_request_us,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
