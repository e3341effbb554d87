"""Sampling methods: a registry of samplers, one file each (no torch on import).

Every module of this package that is not one of the shared ones in :data:`SHARED` is a sampler:
it declares itself once with :func:`~gan.samplers.registry.register` (name, options, needs,
implementation), and importing this package imports it. A new method is one new file here (and
its test); ``gan-sample``/``gan-eval --method``, ``POST /generate``'s schema and ``GET /info``
pick it up.

Shared modules: :mod:`~gan.samplers.options` (OptionSpec, MethodError), :mod:`~gan.samplers.
registry` (Sampler, register, parsing, kind refusals), :mod:`~gan.samplers.seeds`,
:mod:`~gan.samplers.results` (GuidedResult, ImageStats, Cost), :mod:`~gan.samplers.steps`
(Forward, run_steps), :mod:`~gan.samplers.ebm` (EBMSearch, langevin_pixels, ebm_search) and
:mod:`~gan.samplers.dispatch` (Models and the one dispatcher: sample, method_steps,
run_gradient_method). Only options and registry are torch-free at import; import the others
where torch is wanted.
"""

from __future__ import annotations

import importlib
import pkgutil

from gan.samplers.ebm import EBMSearch
from gan.samplers.options import MethodError, OptionSpec
from gan.samplers.registry import (
    METHODS,
    CalibrationMissing,
    MethodOptions,
    Sampler,
    calibration_missing,
    check_kind,
    kind_refusal,
    method_of,
    method_spec,
    option_names,
    options_dict,
    options_from_strings,
    parse_options,
    register,
    runs_gradients,
    sort_registry,
)

#: The modules of this package that are no sampler.
SHARED = frozenset({"options", "registry", "seeds", "results", "steps", "ebm", "dispatch"})

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _module.name not in SHARED and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
sort_registry()

#: The methods' names, in listing order.
METHOD_NAMES: tuple[str, ...] = tuple(METHODS)

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "CalibrationMissing",
    "EBMSearch",
    "MethodError",
    "MethodOptions",
    "OptionSpec",
    "Sampler",
    "calibration_missing",
    "check_kind",
    "kind_refusal",
    "method_of",
    "method_spec",
    "option_names",
    "options_dict",
    "options_from_strings",
    "parse_options",
    "register",
    "runs_gradients",
]
