"""Value types for the sub-commands' argparse flags, so a bad value reads the same everywhere.

Each returns a function for `add_argument(type=...)` that raises `argparse.ArgumentTypeError` with
the rule it broke ("must be 1 or more, got 0"); argparse turns that into the one-line exit 2.
Only argparse and math are imported: the CLI builds every parser before any command runs.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

__all__ = ["number", "at_least", "more_than", "between"]


def number(text: str, kind: type) -> Any:
    """`text` as an int or a finite float."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _checked(kind: type, ok: Callable[[Any], bool], rule: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = number(text, kind)
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return value

    return parse


def at_least(kind: type, low: float, *, rule: str | None = None) -> Callable[[str], Any]:
    """`low` or more; `rule` words it differently ("0 or more seconds")."""
    return _checked(kind, lambda value: value >= low, rule or f"{low:g} or more")


def more_than(kind: type, low: float) -> Callable[[str], Any]:
    return _checked(kind, lambda value: value > low, f"more than {low:g}")


def between(kind: type, low: float, high: float) -> Callable[[str], Any]:
    return _checked(kind, lambda value: low <= value <= high, f"between {low:g} and {high:g}")
