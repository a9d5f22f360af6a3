"""Argparse pieces shared by every command line, so a flag or a bad value reads the same everywhere.

`Parser` and `run_handler` are what `sdxlpool` (cli.py) and `python -m sdxlpool.sim` both run on:
a bad flag, or a handler's ConfigError, prints one line `PROG: error: ...` and exits 2.

The value types (`number`, `at_least`, ...) each return a function for `add_argument(type=...)` that
raises `argparse.ArgumentTypeError` with the rule it broke ("must be 1 or more, got 0"); argparse
turns that into the one-line exit 2. The generation flags: the pool's limits and defaults, the same
on `worker`, `sim-worker` and `gateway` (the table is `sdxlpool.api.pool_config.GENERATION_FLAGS`).
Nothing heavy is imported: the CLI builds every parser before any command runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from sdxlpool.errors import ConfigError

__all__ = ["Parser", "run_handler", "number", "at_least", "more_than", "between",
           "add_generation_flags", "generation_given", "add_fast_mode_flags", "FAST_MODE_KEYS"]

# The fast-mode flags' attributes, each the settings field of the same name (WorkerSettings).
FAST_MODE_KEYS = ("fast_mode", "deepcache_interval", "deepcache_branch")


class Parser(argparse.ArgumentParser):
    """Exits 2 with `PROG: error: MESSAGE (see --help)` on a bad flag (argparse's default prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_handler(args: argparse.Namespace, prog: str) -> int:
    """Run the sub-command's `args.handler` with logging set up (SDXLPOOL_LOG_LEVEL, default INFO).

    A ConfigError becomes one line `PROG: error: ...` on stderr and exit status 2; Ctrl-C exits 130."""
    try:
        logging.basicConfig(level=_log_level(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return args.handler(args)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _log_level() -> str:
    """$SDXLPOOL_LOG_LEVEL, checked (pydantic-settings loads only when a command runs, not for --help)."""
    from pydantic import ValidationError

    from sdxlpool._settings import LogSettings

    try:
        return LogSettings().log_level
    except ValidationError as exc:
        raise ConfigError(f"$SDXLPOOL_LOG_LEVEL: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


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


_METAVARS = {int: "N", float: "X", str: "NAME"}


def add_generation_flags(parser: argparse.ArgumentParser) -> None:
    """``--max-steps`` ... ``--default-refiner-switch-at``: what requests may ask and what they get when
    they leave a field out. A pool renders the same values for every worker and its gateway."""
    from sdxlpool.api.pool_config import GENERATION_FLAGS

    group = parser.add_argument_group("limits and defaults")
    for flag in GENERATION_FLAGS:
        group.add_argument(flag.flag, type=flag.kind, help=flag.help, metavar=_METAVARS[flag.kind])


def add_fast_mode_flags(parser: argparse.ArgumentParser) -> None:
    """``--fast-mode`` and DeepCache's parameters: the same on `worker` and `sim-worker` (whose timing
    model then runs DeepCache's cheaper evaluations)."""
    from sdxlpool.api.fast_modes import FAST_MODES

    modes = parser.add_argument_group("opt-in fast modes: faster, not exact (default off)")
    modes.add_argument("--fast-mode", choices=FAST_MODES,
                       help="deepcache: reuse the UNet's deep features between full evaluations (DeepCache); "
                            "off: the exact images (default); the mode is named in info.sdxlpool.fast_mode")
    modes.add_argument("--deepcache-interval", type=int, metavar="N",
                       help="deepcache: a full UNet evaluation every N (default 3)")
    modes.add_argument("--deepcache-branch", type=int, metavar="B",
                       help="deepcache: the shallow branch runs every evaluation down to down block B (default 0)")


def generation_given(args: argparse.Namespace) -> dict[str, Any]:
    """The generation flags given on the command line, by settings field (absent ones left to the settings)."""
    from sdxlpool.api.pool_config import GENERATION_FLAGS

    return {f.field: getattr(args, f.field) for f in GENERATION_FLAGS if getattr(args, f.field, None) is not None}
