"""The sampling-method options of gan-sample and gan-eval (``--method``, ``--method-option``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_method_arguments(p: argparse._ActionsContainer) -> None:
    """--method and --method-option, shared by gan-sample and gan-eval (from the registry)."""
    from gan.samplers import METHOD_NAMES, METHODS

    def joined(names: list[str]) -> str:
        return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)

    options = "; ".join(
        f"{name}: " + (", ".join(f"{o.name}={o.default}" for o in spec.options) or "none")
        for name, spec in METHODS.items()
    )
    calibrated = joined([n for n, s in METHODS.items() if s.needs_calibration])
    gradients = joined([n for n, s in METHODS.items() if s.needs_gradients])
    p.add_argument(
        "--method",
        choices=METHOD_NAMES,
        default="plain",
        help=f"sampling method (default plain): {calibrated} need a calibrated D "
        f"(gan-calibrate); {gradients} run backward passes. See docs/d-guided.md",
    )
    p.add_argument(
        "--method-option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help=f"an option of --method (repeat for several); defaults: {options}",
    )


def method_options(args: argparse.Namespace) -> Any:
    """The typed options of --method from --method-option (a UserError names a bad one)."""
    from gan.samplers import options_from_strings

    return options_from_strings(args.method, args.method_option)


def method_summary(result: Any) -> str:
    """One line on what a method did: acceptance, proposals, steps, D's logit, cost."""
    import statistics

    stats = result.stats
    n = max(1, len(stats))
    parts = [f"method {result.method}"]
    if result.acceptance_rate is not None:
        parts.append(f"acceptance rate {result.acceptance_rate:.3f}")
    parts.append(f"mean proposals {sum(s.proposals for s in stats) / n:.2f}")
    if any(s.steps for s in stats):
        parts.append(f"steps {stats[0].steps}")
    before = [s.logit_before for s in stats if s.logit_before is not None]
    after = [s.logit_after for s in stats if s.logit_after is not None]
    if before and after:
        parts.append(
            f"mean D logit {statistics.fmean(before):.3f} -> {statistics.fmean(after):.3f}"
        )
    cost = result.cost
    parts.append(
        f"per image: {(cost.generator_forwards + cost.discriminator_forwards) / n:.2f} forwards, "
        f"{(cost.generator_backwards + cost.discriminator_backwards) / n:.2f} backwards, "
        f"{1000 * result.seconds / n:.2f} ms"
    )
    return "; ".join(parts)
