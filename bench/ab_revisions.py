"""A refactor must not make serving slower: ``bench/serve_load.py`` of two revisions, side by side.

``python bench/ab_revisions.py --base REV`` checks REV out into a temporary git worktree and
runs each revision's own ``bench/serve_load.py`` (its own code, the same venv and checkpoint)
alternately, ``--pairs`` times (base, new, base, new, ...: drift of the machine hits both
alike), then prints per scenario the median req/s of each side and their ratio new / base.
A ratio below ``--tolerance`` (default 0.95) is flagged SLOWER and makes the exit status 1.

Runs only on loopback, like serve_load.py; the worktree is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_ARGS = (
    "--seconds 2 --concurrency 1,8,32 --rounds 1 --sweep-rounds 1 --wide-width 0 --no-profile"
)


def run_once(tree: Path, checkpoint: Path, args: list[str], out: Path) -> list[dict[str, object]]:
    """One serve_load.py run of the code in ``tree``; its result rows."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)  # that tree's gan/service, not the installed ones
    argv = [sys.executable, str(tree / "bench" / "serve_load.py"), "--checkpoint", str(checkpoint)]
    argv += [*args, "--json", str(out), "--plot", str(out.with_suffix(".png"))]
    subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    rows: list[dict[str, object]] = json.loads(out.read_text())["results"]
    return rows


def key(row: dict[str, object]) -> str:
    return f"{row['scenario']} {row['server']} c={row['concurrency']}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--base", required=True, help="the revision to compare with (e.g. a commit)")
    p.add_argument("--pairs", type=int, default=2, help="base/new runs each, alternated")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "checkpoints" / "mnist")
    p.add_argument("--args", default=DEFAULT_ARGS, help="serve_load.py options for every run")
    p.add_argument("--tolerance", type=float, default=0.95)
    p.add_argument("--json", type=Path, default=None, help="write the medians and ratios here")
    a = p.parse_args(argv)
    args = a.args.split()
    checkpoint = a.checkpoint.resolve()
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), a.base],
            check=True,
            capture_output=True,
        )
        try:
            runs: dict[str, dict[str, list[float]]] = {"base": {}, "new": {}}
            for i in range(a.pairs):
                for side, tree in (("base", base_tree), ("new", ROOT)):
                    print(f"run {i + 1}/{a.pairs}: {side}", file=sys.stderr, flush=True)
                    out = Path(tmp) / f"{side}-{i}.json"
                    for row in run_once(tree, checkpoint, args, out):
                        runs[side].setdefault(key(row), []).append(float(row["req_s"]))  # type: ignore[arg-type]
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)],
                check=False,
                capture_output=True,
            )
    slower = 0
    table = []
    print(f"{'scenario':40s} {'base req/s':>11s} {'new req/s':>10s} {'new/base':>9s}")
    for name, values in runs["base"].items():
        if name not in runs["new"]:
            continue
        b, n = statistics.median(values), statistics.median(runs["new"][name])
        ratio = n / b if b else float("nan")
        flag = "  SLOWER" if ratio < a.tolerance else ""
        slower += bool(flag)
        table.append({"scenario": name, "base_req_s": b, "new_req_s": n, "ratio": ratio})
        print(f"{name:40s} {b:11.1f} {n:10.1f} {ratio:9.3f}{flag}")
    ratios = [r["ratio"] for r in table]
    print(f"median ratio new/base: {statistics.median(ratios):.3f} over {len(ratios)} scenarios")
    if a.json is not None:
        a.json.write_text(json.dumps({"base": a.base, "pairs": a.pairs, "rows": table}, indent=2))
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
