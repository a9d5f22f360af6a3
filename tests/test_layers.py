"""Layering contracts, checked the way kopf's .importlinter checks its own.

`sdxlpool.api` is pure data shared by the worker, the gateway and the operator: importing it must
not pull in torch, diffusers, a web framework or an HTTP client. The CLI must start without torch
too, so `--help` and argument errors stay instant.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "fastapi", "starlette", "uvicorn", "httpx")


def imported_after(statement: str) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("statement", ["import sdxlpool.api", "import sdxlpool.cli", "import sdxlpool.errors"])
def test_light_modules_import_nothing_heavy(statement: str) -> None:
    heavy = {name for name in imported_after(statement) if name.split(".")[0] in HEAVY}
    assert not heavy, f"{statement} imports {sorted(heavy)}"


def test_the_operator_layers_keep_to_their_imports() -> None:
    """desired, drift, status and crd are pure: no kopf, no Kubernetes client (kopf's layering)."""
    for module in ("sdxlpool.operator.desired", "sdxlpool.operator.drift", "sdxlpool.operator.status",
                   "sdxlpool.operator.crd"):
        loaded = imported_after(f"import {module}")
        offenders = {name for name in loaded if name.split(".")[0] in {"kopf", "kubernetes", *HEAVY}}
        assert not offenders, f"{module} imports {sorted(offenders)}"
