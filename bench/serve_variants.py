"""gan-serve under different HTTP stacks, worker counts and engines, measured side by side.

Each variant is the real ``gan-serve`` process with the default settings except the ones named:

* ``h11+asyncio``: ``GAN_HTTP=h11 GAN_LOOP=asyncio``, the pure-Python stack (the default before
  httptools and uvloop were installed with the service);
* ``httptools+asyncio`` and ``h11+uvloop``: one of the two C parts at a time;
* ``auto``: the default, which picks httptools and uvloop;
* ``auto+2workers``: the default stack with ``GAN_WORKERS=2`` (two processes, each with its own
  models and batcher, sharing the port);
* ``auto+onnxruntime``: the default stack with ``GAN_ENGINE=onnxruntime`` (plain G and D forwards
  in onnxruntime sessions instead of torch; needs ``pip install -e '.[onnx]'``). Against ``auto``,
  the torch engine: ``--variants auto,auto+onnxruntime --baseline auto``.

All variants run at once (an idle one costs next to nothing) and take turns: every round drives
each scenario on each variant, in an order rotated per round, with the same closed-loop client
as ``bench/serve_load.py`` (both use ``bench/loadkit.py``). Printed: req/s and p99 per cell, the
medians over the rounds, each variant's ratio to ``h11+asyncio`` (median of the per-round
ratios), and peak RSS (summed over a variant's processes).

    python bench/serve_variants.py                      # 3 rounds of 3 s per cell, ~6 min
    python bench/serve_variants.py --variants auto,auto+onnxruntime --baseline auto  # engines
    python bench/serve_variants.py --rounds 1 --seconds 1 --variants auto,h11+asyncio  # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.loadkit import (  # noqa: E402
    LoadResult,
    PeerScenario,
    Server,
    gan_serve,
    generate_spec,
    machine,
    median,
    rotated_rounds,
    running,
    sample_pngs,
    score_spec,
)

VARIANTS: dict[str, dict[str, str]] = {
    "h11+asyncio": {"GAN_HTTP": "h11", "GAN_LOOP": "asyncio"},
    "httptools+asyncio": {"GAN_HTTP": "httptools", "GAN_LOOP": "asyncio"},
    "h11+uvloop": {"GAN_HTTP": "h11", "GAN_LOOP": "uvloop"},
    "auto": {},
    "auto+2workers": {"GAN_WORKERS": "2"},
    "auto+onnxruntime": {"GAN_ENGINE": "onnxruntime"},
}
BASELINE = "h11+asyncio"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "mnist")
    p.add_argument("--seconds", type=float, default=3.0, help="measured seconds per cell (3)")
    p.add_argument("--rounds", type=int, default=3, help="rounds, order rotated per round (3)")
    p.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of: {', '.join(VARIANTS)} (all)",
    )
    p.add_argument(
        "--baseline",
        default=BASELINE,
        choices=list(VARIANTS),
        help=f"the variant the ratios are to, run even if not listed ({BASELINE})",
    )
    p.add_argument("--json", type=Path, default=None, help="write all results here")
    args = p.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    baseline = args.baseline
    if baseline not in names:
        names.insert(0, baseline)
    onnx = [n for n in names if VARIANTS[n].get("GAN_ENGINE") == "onnxruntime"]
    if onnx:
        import importlib.util

        missing = [
            m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None
        ]
        if missing:
            p.error(f"{', '.join(onnx)} need {', '.join(missing)}: pip install -e '.[onnx]'")

    started = time.perf_counter()
    info = machine()
    print(f"machine: {info}")
    pngs = sample_pngs(args.checkpoint, 1)
    one = score_spec(pngs)
    scenarios = [
        PeerScenario("score-1", one, 1),
        PeerScenario("score-1", one, 8),
        PeerScenario("score-1", one, 32),
        PeerScenario("generate-1", generate_spec(1, "png"), 8),
        PeerScenario("generate-64", generate_spec(64, "grid"), 4),
    ]
    with tempfile.TemporaryDirectory(prefix="serve-variants-") as tmp, contextlib.ExitStack() as st:
        servers: dict[str, Server] = {}
        for name in names:
            srv = gan_serve(
                name.replace(" ", "").replace(",", "-"), args.checkpoint, Path(tmp), VARIANTS[name]
            )
            servers[name] = st.enter_context(running(srv))
        print("ready (s): " + ", ".join(f"{n} {servers[n].ready_s:.1f}" for n in names))
        results = rotated_rounds(servers, scenarios, args.rounds, args.seconds)
        rss = {name: servers[name].peak_rss_mb() for name in names}

    def cells(name: str, sc: PeerScenario) -> list[LoadResult]:
        key = (name, sc.scenario, sc.concurrency)
        return [r for r in results if (r.server, r.scenario, r.concurrency) == key]

    print(f"\nmedians over {args.rounds} round(s): req/s (p99 ms); ratio to {baseline} in []")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for sc in scenarios:
        label = f"{sc.scenario} c={sc.concurrency}"
        base = cells(baseline, sc)
        row = []
        for name in names:
            rs = cells(name, sc)
            rps = median([r.req_s for r in rs])
            p99 = median([r.p99_ms if r.p99_ms is not None else float("nan") for r in rs])
            ratio = median([a.req_s / b.req_s for a, b in zip(rs, base, strict=True) if b.req_s])
            table.setdefault(label, {})[name] = {"req_s": rps, "p99_ms": p99, "ratio": ratio}
            row.append(f"{name} {rps:.1f} ({p99:.1f} ms) [{ratio:.2f}]")
        print(f"  {label:<16} " + " | ".join(row))
    print(
        "peak RSS (MB, summed over a variant's processes): "
        + ", ".join(f"{n} {rss[n] or 0:.0f}" for n in names)
    )
    print(f"total time {time.perf_counter() - started:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": info,
            "variants": {n: VARIANTS[n] for n in names},
            "baseline": baseline,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "table": table,
            "peak_rss_mb": rss,
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
