"""Checks of configuration values: one set of rules for every knob, whatever its surface.

    check_int("batch_size", 0)            # ConfigError: batch_size must be an integer from 1 ...
    check_int("threads", t, most=cpus)    # an upper bound where one protects the machine

Encoder.load and the frozen config classes (BatchPlan, JobConfig, ServerConfig, ...) call these
at construction, so a bad value fails where it is given, with the allowed range in the message,
instead of deep inside ONNX Runtime or numpy. Strings are parsed at the edge (CLI, HTTP): these
take canonical Python values only, and a bool is never an integer here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .errors import ConfigError

# The largest count any knob may take: far above a sane setting, low enough that no knob can
# ask numpy or ONNX Runtime for an absurd allocation or thread count before its own check runs.
MAX_COUNT = 1 << 31


def is_int(value: object) -> bool:
    """An int that is not a bool (True is an int to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(
    name: str,
    value: object,
    least: int = 1,
    most: int = MAX_COUNT,
    *,
    none: bool = False,
    why: str = "",
) -> None:
    """ConfigError unless value is an integer in [least, most] (or None where none=True).

    why: appended to the message, e.g. what the upper bound protects.
    """
    if value is None and none:
        return
    if not is_int(value) or not least <= value <= most:  # type: ignore[operator]
        allowed = f"an integer from {least:,} to {most:,}"
        if none:
            allowed += " or None"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}{why}")


def check_number(name: str, value: object, least: float, most: float) -> None:
    """ConfigError unless value is a finite int or float in [least, most]."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not least <= value <= most
    ):
        raise ConfigError(f"{name} must be a number from {least:g} to {most:g}, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    """ConfigError unless value is one of choices."""
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(f"{name} {value!r} is not one of {', '.join(choices)}")
