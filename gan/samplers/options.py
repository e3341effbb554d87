"""Options of the sampling methods: their declaration (:class:`OptionSpec`) and validation (no
torch). Every method's options are frozen dataclasses; :class:`OptionSpec` says what values one
may take, and :meth:`OptionSpec.check` is the one place those values are checked."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from gan.errors import UserError

OptionType = Literal["integer", "number", "string"]

#: Hard bounds (the service's caps, e.g. GAN_MAX_PROPOSALS, are usually lower).
MAX_PROPOSALS_BOUND = 10_000
MAX_STEPS_BOUND = 10_000

#: The prefix of the service's environment variables (service/settings.py).
SETTING_PREFIX = "GAN_"


class MethodError(UserError, ValueError):
    """An unknown method or a bad method option; ``option`` names the option at fault."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


def setting_env(field: str) -> str:
    """The environment variable of a service setting: ``max_proposals`` -> GAN_MAX_PROPOSALS."""
    return SETTING_PREFIX + field.upper()


@dataclass(frozen=True)
class OptionSpec:
    """One option of a method: its type, default and bounds (inclusive unless ``exclusive``)."""

    name: str
    type: OptionType
    default: int | float | str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    #: The service setting (a field of service.settings.Settings, e.g. ``max_proposals``) that
    #: caps this option per request, if any.
    cap: str | None = None

    @property
    def cap_env(self) -> str | None:
        """The cap's environment variable (GAN_MAX_PROPOSALS, ...), as messages name it."""
        return None if self.cap is None else setting_env(self.cap)

    def check(self, value: Any) -> int | float | str:
        """``value`` converted to the option's type; :class:`MethodError` if it does not fit."""
        name = self.name
        if self.type == "string":
            if not isinstance(value, str) or value not in self.choices:
                raise MethodError(
                    f"{name} must be one of {', '.join(self.choices)}; got {value!r}", name
                )
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MethodError(f"{name} must be a number, got {value!r}", name)
        if self.type == "integer":
            if isinstance(value, float) and not value.is_integer():
                raise MethodError(f"{name} must be a whole number, got {value!r}", name)
            value = int(value)
        elif not math.isfinite(value):
            raise MethodError(f"{name} must be a finite number, got {value!r}", name)
        else:
            value = float(value)
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.exclusive_minimum else value < low):
            relation = "above" if self.exclusive_minimum else "at least"
            raise MethodError(f"{name} must be {relation} {low:g}, got {value!r}", name)
        if high is not None and value > high:
            raise MethodError(f"{name} must be at most {high:g}, got {value!r}", name)
        return value

    def from_string(self, text: str) -> int | float | str:
        """A command-line value (``--method-option NAME=TEXT``) in the option's type, unchecked."""
        if self.type == "string":
            return text.strip()
        try:
            return int(text) if self.type == "integer" else float(text)
        except ValueError:
            kind = "a whole number" if self.type == "integer" else "a number"
            raise MethodError(f"{self.name} must be {kind}, got {text!r}", self.name) from None

    def describe(self) -> dict[str, Any]:
        """For ``GET /info``: the JSON-schema-like description the web page reads."""
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "default": self.default,
            "description": self.description,
        }
        if self.minimum is not None:
            out["minimum"] = self.minimum
            if self.exclusive_minimum:
                out["exclusive_minimum"] = True
        if self.maximum is not None:
            out["maximum"] = self.maximum
        if self.choices:
            out["enum"] = list(self.choices)
        if self.cap_env is not None:
            out["cap_setting"] = self.cap_env
        return out
