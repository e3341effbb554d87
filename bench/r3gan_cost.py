"""What a step of each recipe's networks costs on this machine: dcgan, r3gan and r3gan-small.

One batch of 64 images at 32 px RGB (by default), 1 torch thread; after a warm-up, each pass
of each recipe is timed once per round, the recipes interleaved, and the fastest of
``--rounds`` rounds is reported (so that other jobs on the machine touch every recipe alike and
the minimum is what the pass costs):

* D fwd+bwd: D on real and fake images, the loss backward (no penalty);
* D + penalty: the same plus one zero-centred gradient penalty (R1: a double backward);
* G fwd+bwd: G's images through D, the loss backward to G's parameters;
* iteration: one D step and one G step as the recipe trains them (dcgan: nonsat without R1;
  r3gan and r3gan-small: rpgan with R1 and R2 on every D step, G paired with the real batch).

``.venv/bin/python bench/r3gan_cost.py`` prints a Markdown table with each column's ratio to
dcgan's. The models are built from the recipes' own configs (training/config.py RECIPES).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from gan.models import ModelConfig, build_models
from training.config import config_from_options
from training.losses import build_loss, gradient_penalty

PASSES = ("D fwd+bwd", "D + penalty", "G fwd+bwd", "iteration")


def _seconds(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def passes(recipe: str, resolution: int, channels: int, batch: int) -> list[Callable[[], None]]:
    """The passes of PASSES for ``recipe``'s networks, each a function to time."""
    cfg = config_from_options({"recipe": recipe})
    mc: ModelConfig = replace(cfg.model, resolution=resolution, channels=channels)
    g, d = build_models(mc, seed=0)
    g.train()
    d.train()
    loss = build_loss(cfg.loss, r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every)
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(batch, channels, resolution, resolution, generator=gen) * 2 - 1
    z = torch.randn(batch, mc.z_dim, generator=gen)
    with torch.no_grad():
        fake = g(z)

    def zero(*nets: nn.Module) -> None:
        for net in nets:
            net.zero_grad(set_to_none=True)

    def d_pass() -> None:
        zero(d)
        build_loss(cfg.loss).d_objective(d, real, fake, 1)[0].backward()

    def d_penalty() -> None:
        zero(d)
        total = build_loss(cfg.loss).d_objective(d, real, fake, 1)[0]
        (total + gradient_penalty(d, real)).backward()

    def g_pass() -> None:
        zero(g, d)
        out = g(z)
        if loss.needs_real_for_g:
            loss.g_objective(d, out, None, real).backward()
        else:
            loss.g_objective(d, out).backward()

    def iteration() -> None:
        zero(d)
        loss.d_objective(d, real, fake, 0)[0].backward()
        g_pass()

    return [d_pass, d_penalty, g_pass, iteration]


def measure(
    recipes: list[str], resolution: int, channels: int, batch: int, rounds: int
) -> dict[str, list[float]]:
    """The fastest seconds of each pass of each recipe over ``rounds`` interleaved rounds."""
    fns = {n: passes(n, resolution, channels, batch) for n in recipes}
    for n in recipes:  # warm-up
        for fn in fns[n]:
            fn()
    best = {n: [float("inf")] * len(PASSES) for n in recipes}
    for _ in range(rounds):
        for n in recipes:
            best[n] = [min(b, _seconds(fn)) for b, fn in zip(best[n], fns[n], strict=True)]
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipes", default="dcgan,r3gan,r3gan-small")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    names = args.recipes.split(",")
    rows = measure(names, args.resolution, args.channels, args.batch, args.rounds)
    base = rows.get("dcgan")
    print(
        f"{args.batch} images, {args.resolution} px, {args.channels} channel(s), "
        f"{args.threads} thread(s), fastest of {args.rounds} interleaved rounds\n"
    )
    print("| recipe | " + " | ".join(PASSES) + " |")
    print("|---" * (len(PASSES) + 1) + "|")
    for n, secs in rows.items():
        cells = [
            f"{s:.3f} s" + (f" ({s / b:.1f} x)" if base is not None else "")
            for s, b in zip(secs, base or secs, strict=True)
        ]
        print(f"| {n} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
