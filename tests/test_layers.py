"""Layering, at run time; the static contracts are import-linter's (pyproject.toml, `lint-imports` in CI).

The contracts check every import statement, lazy ones included: the layers, no cycles, `sdxlpool.api`
free of torch/web/HTTP libraries, the operator's pure modules free of kopf and the Kubernetes client,
and no product module importing `sdxlpool.testing`. What they cannot see is what a process actually
loads: the CLI must start without torch, a web framework or an HTTP client, so `--help` and argument
errors stay instant; that is why `sim`, `client` and `akash` load their heavy names lazily
(`sdxlpool._lazy`), and what these tests check.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdxlpool._lazy import lazy_attributes

HEAVY = ("torch", "diffusers", "transformers", "fastapi", "starlette", "uvicorn", "httpx", "aiohttp", "websockets",
         "kopf", "kubernetes")
ROOT = Path(__file__).resolve().parents[1]


def imported_after(statement: str) -> set[str]:
    code = f"import json, sys; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize("statement", ["import sdxlpool.cli", "import sdxlpool.errors", "import sdxlpool.sim",
                                       "import sdxlpool.client", "import sdxlpool.akash", "import sdxlpool.testing"])
def test_light_modules_import_nothing_heavy(statement: str) -> None:
    heavy = {name for name in imported_after(statement) if name.split(".")[0] in HEAVY}
    assert not heavy, f"{statement} imports {sorted(heavy)}"


def test_the_cli_loads_no_command_before_it_runs() -> None:
    """Building the parser imports each command's `_cli` module, never its server side."""
    loaded = imported_after("import sdxlpool.cli; sdxlpool.cli._build_parser()")
    servers = {name for name in loaded if name.startswith(("sdxlpool.worker.", "sdxlpool.gateway.",
                                                           "sdxlpool.sim._app", "sdxlpool.client._ws",
                                                           "sdxlpool.testing"))}
    assert not servers, sorted(servers)


def test_lazy_names_load_on_first_use() -> None:
    loaded = imported_after("import sdxlpool.sim as sim; assert sim.SimSettings.__name__ == 'SimSettings'")
    assert "sdxlpool.sim._settings" in loaded
    getattr_ = lazy_attributes("pkg", {"dumps": "json"})
    assert getattr_("dumps") is json.dumps
    with pytest.raises(AttributeError, match="module 'pkg' has no attribute 'other'"):
        getattr_("other")


def test_python_m_sdxlpool_sim_runs_without_the_cli() -> None:
    """`python -m sdxlpool.sim` is `sdxlpool sim-worker`, on its own entry (sim sits below the CLI)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "sdxlpool.sim", "--gpu-model", "A100",
                           "--step-seconds", "soon"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "sdxlpool sim-worker: error: argument --step-seconds: not a number: 'soon' (see --help)" in done.stderr
    assert "sdxlpool.cli" not in done.stderr  # -X importtime lists every module loaded


def test_the_contracts_name_every_top_level_module() -> None:
    """The layers contract is exhaustive; the forbidden contract for `sdxlpool.testing` lists every other one."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    contracts = {contract["id"]: contract for contract in config}
    assert contracts["layers"]["exhaustive"] is True
    package = ROOT / "sdxlpool"
    modules = {f"sdxlpool.{p.stem}" for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {f"sdxlpool.{p.parent.name}" for p in package.glob("*/__init__.py")}
    assert set(contracts["testing-stays-out"]["source_modules"]) == modules - {"sdxlpool.testing"}
