"""docs/reference/crd.md: every field of the SDXLPool spec and status, from the CRD's own schema.

The schema is read from ``crds/sdxlpools.sdxlpool.dev.yaml``, which ``python -m sdxlpool.operator.crd``
writes from the pydantic model (``sdxlpool/api/spec.py``) and its own test keeps in step with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CRD_FILE", "render", "fields", "rules"]

CRD_FILE = "crds/sdxlpools.sdxlpool.dev.yaml"


_QUANTITY = "x-kubernetes-int-or-string"


def render(root: Path) -> str:
    crd = yaml.safe_load((root / CRD_FILE).read_text(encoding="utf-8"))
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    parts = [f"Generated from `{CRD_FILE}` ({crd['spec']['group']}/{version['name']}, kind "
             f"{crd['spec']['names']['kind']}).\n"]
    for section in ("spec", "status"):
        node = schema["properties"][section]
        parts.append(f"## {section}\n\n{_text(node.get('description', ''))}\n")
        parts.append("| field | type | default | required | constraints | description |\n"
                     "|---|---|---|---|---|---|\n" + "".join(
                         "| " + " | ".join(_cell(value) for value in row) + " |\n" for row in fields(node, section)))
    parts.append("## Admission rules\n\nCEL rules (`x-kubernetes-validations`) the API server checks when a pool "
                 "is created or changed; a pool that breaks one is refused with its message (`sdxlpool/api/cel.py`)."
                 "\n\n| at | rule | message |\n|---|---|---|\n" + "".join(
                     "| " + " | ".join(_cell(value) for value in row) + " |\n"
                     for row in rules(schema["properties"]["spec"], "spec")))
    return "\n".join(parts)


def rules(node: dict[str, Any], path: str) -> Iterator[tuple[str, str, str]]:
    """(path, rule, message) for every CEL rule at or under node, depth first."""
    for rule in node.get("x-kubernetes-validations", ()):
        message = rule.get("message") or f"(an expression) `{_text(rule['messageExpression'])}`"
        yield f"`{path}{rule.get('fieldPath', '')}`", f"`{_text(rule['rule'])}`", _text(message)
    for name, child in node.get("properties", {}).items():
        yield from rules(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from rules(node["items"], path + "[]")


def fields(node: dict[str, Any], path: str) -> Iterator[tuple[str, str, str, str, str, str]]:
    """(path, type, default, required, constraints, description) for every field under node, depth first."""
    required = set(node.get("required", ()))
    for name, child in node.get("properties", {}).items():
        child_path = f"{path}.{name}"
        yield (f"`{child_path}`", _type(child), _default(child), "yes" if name in required else "",
               _constraints(child), _text(child.get("description", "")))
        yield from _children(child, child_path)


def _children(node: dict[str, Any], path: str) -> Iterator[tuple[str, str, str, str, str, str]]:
    if "properties" in node:
        yield from fields(node, path)
    if isinstance(node.get("items"), dict):
        yield from _children(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _children(node["additionalProperties"], path + "{}")


def _type(node: dict[str, Any]) -> str:
    if node.get(_QUANTITY):
        return "quantity (integer or string)"
    kind = node.get("type", "any")
    if kind == "array" and isinstance(node.get("items"), dict):
        kind = f"list of {_type(node['items'])}"
    elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
        kind = f"map of {_type(node['additionalProperties'])}"
    return kind


def _default(node: dict[str, Any]) -> str:
    return f"`{json.dumps(node['default'])}`" if "default" in node else ""


def _constraints(node: dict[str, Any]) -> str:
    found = []
    if "enum" in node:
        found.append("one of " + ", ".join(f"`{value}`" for value in node["enum"]))
    for key, words in (("minimum", ">="), ("maximum", "<="), ("minLength", "length >="), ("maxLength", "length <="),
                       ("minItems", "items >="), ("maxItems", "items <="), ("multipleOf", "multiple of")):
        if key in node:
            exclusive = node.get("exclusive" + key[0].upper() + key[1:]) is True
            found.append(f"{words.replace('=', '') if exclusive else words} {node[key]}")
    if "pattern" in node and not node.get(_QUANTITY):
        found.append(f"matches `{node['pattern']}`")
    if node.get("nullable"):
        found.append("may be null")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        found.append("keeps unknown fields")
    return "; ".join(found)


def _text(description: str) -> str:
    return " ".join(description.split())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
