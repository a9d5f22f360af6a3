"""Every contract has one home: no Python file spells a label, annotation or metric name but the
module that defines it.

Label and annotation keys live in sdxlpool/api/labels.py (plus Akash's GPU capability prefix in
sdxlpool/api/gpu.py and the SDXLPool apiVersion in sdxlpool/api/spec.py), metric names in
sdxlpool/api/metric_names.py. Everything else, tests and scripts included, imports them, so renaming
one is a one-line change that every user follows, and a copy cannot drift. Docstrings may name them
(prose); string literals in code may not. Data files (the chart's YAML, the dashboard's JSON) are
checked against the real registries by tests/chart instead.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdxlpool.api import metric_names

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sdxlpool", "tests", "benchmarks", "reliability", "scripts")

# Every name defined in the home, bare or as exported (a counter's _total, a histogram's series); a
# deliberately wrong name (a typo a test feeds a checker) is no copy of a contract and passes.
_NAMES = sorted((v for k, v in vars(metric_names).items() if k.isupper() and isinstance(v, str)), key=len,
                reverse=True)
_ALTERNATIVES = "|".join(map(re.escape, _NAMES))
METRIC = re.compile(rf"\b(?:{_ALTERNATIVES})(?:_total|_bucket|_sum|_count|_created)?\b")
LABEL = re.compile(
    r"\b(?:sdxlpool\.dev/(?!v\d)[a-z0-9.-]+|app\.kubernetes\.io/[a-z-]+|prometheus\.io/[a-z-]+"
    r"|nvidia\.com/gpu(?:\.[a-z]+)?|kubernetes\.io/metadata\.name|akash\.network/capabilities[a-z0-9./-]*)"
)
HOMES = {
    "sdxlpool/api/labels.py": LABEL,
    "sdxlpool/api/gpu.py": LABEL,  # Akash's capability label prefix, next to the GPU names it encodes
    "sdxlpool/api/metric_names.py": METRIC,
    Path(__file__).relative_to(ROOT).as_posix(): None,  # this file's patterns and examples
}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (module, class, function) or bare statements."""
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        for child in body if isinstance(body, list) else ():
            if isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant):
                found.add(id(child.value))
    return found


def literal_contract_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, name) of every label/annotation key or metric name spelled in a string literal."""
    tree = ast.parse(path.read_text(), filename=str(path))
    prose = _docstrings(tree)
    allowed = HOMES.get(path.relative_to(ROOT).as_posix(), ())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            for pattern in (METRIC, LABEL):
                if allowed is None or pattern is allowed:
                    continue
                for match in pattern.finditer(node.value):
                    yield node.lineno, match.group()


def python_files() -> list[Path]:
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def test_no_contract_name_is_spelled_outside_its_home() -> None:
    offences = [f"{path.relative_to(ROOT)}:{line}: {name}"
                for path in python_files() for line, name in literal_contract_names(path)]
    assert not offences, ("import these from sdxlpool.api.labels / sdxlpool.api.metric_names instead:\n"
                          + "\n".join(offences))


@pytest.mark.parametrize("source, found", [
    ('x = {"sdxlpool.dev/pool": "demo"}', ["sdxlpool.dev/pool"]),
    ('x = "sdxl_worker_requests_total{outcome=success}"', ["sdxl_worker_requests_total"]),
    ('x = "sdxl_worker_readyish"', []),
    ('x = f"{url}/metrics" + "prometheus.io/port"', ["prometheus.io/port"]),
    ('"""Docstrings may say sdxl_worker_ready and sdxlpool.dev/gpu."""', []),
    ('api = "sdxlpool.dev/v1alpha1"', []),
], ids=["label", "metric", "typo", "annotation", "docstring", "api-version"])
def test_the_check_finds_what_it_should(source: str, found: list[str], tmp_path: Path) -> None:
    module = ROOT / "tests" / "_contract_probe.py"  # inside ROOT, outside the homes, never committed
    module.write_text(source)
    try:
        assert [name for _, name in literal_contract_names(module)] == found
    finally:
        module.unlink()
