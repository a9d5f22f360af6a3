"""docs/reference/cli.md: every command's full ``--help``, from the real parser in ``sdxlpool/cli.py``,
and the settings each server also reads from the environment, from its pydantic-settings model."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["PYTHON_STAMP", "SETTINGS", "render", "help_texts", "summaries", "settings_rows"]


# command -> its settings model ("module:Class"); the sim-worker's lists only what differs from the
# worker's. A model whose module does not exist (yet) is left out: the page then shows no section.
SETTINGS = {
    "worker": "sdxlpool.worker.settings:WorkerSettings",
    "sim-worker": "sdxlpool.sim._settings:SimSettings",
    "gateway": "sdxlpool.gateway.settings:GatewaySettings",
    "operator": "sdxlpool.operator.settings:OperatorSettings",
    "generate": "sdxlpool.client._settings:ClientSettings",
    "every command": "sdxlpool._settings:LogSettings",
}

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
    lines += ["", "## Settings from the environment", "",
              "A flag wins over its variable. Lists are JSON (`SDXLPOOL_MODELS='[\"/m/base.safetensors\"]'`), "
              "booleans `true`/`false`."]
    base: dict[str, tuple[str, str, str, str]] = {}
    for command, where in SETTINGS.items():
        rows = settings_rows(where)
        if rows is None:
            continue
        if command == "sim-worker":
            rows = [row for row in rows if base.get(row[0]) != row]
            lines += ["", f"### {command} (where it differs from the worker)"]
        else:
            lines += ["", f"### {command}"]
        lines += ["", "| variable | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| {variable} | {kind} | {default} | {meaning} |" for variable, kind, default, meaning in rows]
        if command == "worker":
            base = {row[0]: row for row in rows}
    return "\n".join(lines) + "\n"


def settings_rows(where: str) -> list[tuple[str, str, str, str]] | None:
    """(variable, type, default, meaning) per field of a pydantic-settings model; None when there is none."""
    module, name = where.split(":")
    try:
        model: Any = getattr(importlib.import_module(module), name)
    except (ModuleNotFoundError, AttributeError):
        return None
    prefix = model.model_config.get("env_prefix", "")
    rows = []
    for field_name, field in model.model_fields.items():
        variable = " / ".join(f"`{name}`" for name in _variables(field)) or f"`{prefix}{field_name}`".upper()
        if field.is_required():
            default = "required"
        else:
            value = field.default_factory() if field.default_factory is not None else field.default
            default = "" if value is None else f"`{json.dumps(value, default=str)}`"
        rows.append((variable, _cell(_type_name(field.annotation)), _cell(default), _cell(field.description or "")))
    return rows


def _variables(field: Any) -> list[str]:
    """The variables a field's validation alias names (pydantic-settings then ignores the prefix)."""
    alias = field.validation_alias
    choices = getattr(alias, "choices", [alias] if alias is not None else [])
    return [choice for choice in choices if isinstance(choice, str)]


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("pathlib.", "").replace("typing.", "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(name: str) -> str:
    return name.replace(" ", "-")

