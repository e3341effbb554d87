"""gan.samplers: the methods' names, options, defaults and bounds, and how bad ones are refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gan.samplers import (
    METHOD_NAMES,
    METHODS,
    MethodError,
    method_of,
    options_dict,
    options_from_strings,
    parse_options,
)
from gan.samplers.drs import DRSOptions
from gan.samplers.langevin import LangevinOptions
from gan.samplers.pixel_ascent import PixelAscentOptions
from gan.samplers.plain import PlainOptions


def test_the_five_methods_and_their_defaults() -> None:
    assert METHOD_NAMES == ("plain", "drs", "mh", "langevin", "pixel_ascent")
    assert parse_options("plain") == PlainOptions()
    assert parse_options("drs", {}) == DRSOptions(keep=0.8, max_proposals=32)
    for name, spec in METHODS.items():
        defaults = options_dict(parse_options(name))
        assert defaults == {o.name: o.default for o in spec.options}, name
        assert method_of(parse_options(name)) == name
        for option in spec.options:  # every default lies within its own bounds
            assert option.check(option.default) == option.default
    assert [n for n, s in METHODS.items() if s.needs_calibration] == ["drs", "mh"]
    assert [n for n, s in METHODS.items() if s.needs_gradients] == ["langevin", "pixel_ascent"]


@pytest.mark.parametrize(
    ("method", "values", "option", "phrase"),
    [
        ("drs", {"keep": 1.0}, "keep", "at most 0.99"),
        ("drs", {"keep": -0.1}, "keep", "at least 0"),
        ("drs", {"keep": "high"}, "keep", "must be a number"),
        ("drs", {"max_proposals": 2.5}, "max_proposals", "whole number"),
        ("drs", {"max_proposals": 0}, "max_proposals", "at least 1"),
        ("drs", {"max_proposals": True}, "max_proposals", "must be a number"),
        ("mh", {"proposals": 10_001}, "proposals", "at most 10000"),
        ("langevin", {"step_size": 0.0}, "step_size", "above 0"),
        ("langevin", {"noise": float("nan")}, "noise", "finite"),
        ("pixel_ascent", {"start": "zeros"}, "start", "noise, sample"),
        ("drs", {"kep": 0.5}, "kep", "takes keep, max_proposals; unknown: kep"),
        ("plain", {"keep": 0.5}, "keep", "takes no options"),
    ],
)
def test_bad_options_name_the_option_and_the_bound(
    method: str, values: dict[str, object], option: str, phrase: str
) -> None:
    with pytest.raises(MethodError, match=phrase) as err:
        parse_options(method, values)
    assert err.value.option == option


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(MethodError, match="use one of plain, drs, mh, langevin, pixel_ascent"):
        parse_options("argmax")


def test_command_line_pairs() -> None:
    assert options_from_strings("drs", ["keep=0.9", "max-proposals=16"]) == DRSOptions(0.9, 16)
    assert options_from_strings("langevin", ["steps=5"]) == LangevinOptions(steps=5)
    assert options_from_strings("pixel_ascent", ["start=sample"]) == PixelAscentOptions(
        start="sample"
    )
    with pytest.raises(MethodError, match="NAME=VALUE"):
        options_from_strings("drs", ["keep"])
    with pytest.raises(MethodError, match=r"max_proposals must be a whole number, got '1\.5'"):
        options_from_strings("drs", ["max_proposals=1.5"])
    with pytest.raises(MethodError, match="unknown: strength"):
        options_from_strings("drs", ["strength=1"])


def test_importing_the_method_specs_does_not_import_torch() -> None:
    code = "import sys, gan.samplers; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
