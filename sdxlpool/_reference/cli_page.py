"""docs/reference/cli.md: every command's full ``--help``, from the real parser in ``sdxlpool/cli.py``."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

__all__ = ["INTRO", "PYTHON_STAMP", "render", "help_texts", "summaries"]

INTRO = """\
The console script `sdxlpool` has one sub-command per part of the system. Every command has
`--help`; a bad argument or a user error (a missing file, a busy port, an invalid pool) prints one
line `sdxlpool COMMAND: error: ...` on stderr and exits 2, never a traceback. Flags of `worker`,
`sim-worker` and `gateway` override their `SDXLPOOL_*` / `SDXLPOOL_GATEWAY_*` environment variables
(the worker's limits and defaults are listed in the README's "Limits, defaults and environment
variables").

Below is each command's `--help`, exactly as the code prints it."""

WIDTH = 100  # help is wrapped as on a 100-column terminal, whatever terminal regenerates the page
# argparse's layout changes between Python versions (3.13 prints `-o, --output FILE`): the page says
# which one wrote it, and the check compares only on that version.
PYTHON_STAMP = f"Python {sys.version_info.major}.{sys.version_info.minor}"


def _commands() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    from sdxlpool.cli import _build_parser

    parser = _build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, commands


def help_texts() -> dict[str, str]:
    """'sdxlpool' and 'sdxlpool COMMAND' -> that parser's --help, at a fixed width, without colour."""
    parser, commands = _commands()
    texts = {"sdxlpool": _format(parser)}
    for name, sub in commands.choices.items():
        texts[f"sdxlpool {name}"] = _format(sub)
    return texts


def summaries() -> dict[str, str]:
    """'sdxlpool COMMAND' -> its one-line help, as `sdxlpool --help` lists it."""
    _, commands = _commands()
    return {f"sdxlpool {choice.dest}": choice.help or "" for choice in commands._choices_actions}


def _format(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)  # type: ignore[assignment,unused-ignore]
    if hasattr(parser, "color"):  # Python 3.14+: no ANSI colours in the page
        parser.color = False
    return parser.format_help().rstrip() + "\n"


def render(root: Path) -> str:
    texts = help_texts()
    lines = [f"Generated with {PYTHON_STAMP}.", "", "| command | does |", "|---|---|"]
    lines += [f"| [`{name}`](#{_anchor(name)}) | {text.replace('|', chr(92) + '|')} |"
              for name, text in summaries().items()]
    for name, text in texts.items():
        lines += ["", f"## {name}", "", "```text", text.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _anchor(name: str) -> str:
    return name.replace(" ", "-")

