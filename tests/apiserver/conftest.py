"""A real Kubernetes API server component for the CRD tests: the apiextensions-apiserver and etcd
that scripts/fetch-apiextensions.sh builds from Debian's packages into .tools/bin (.ci/run runs it
beside the install phases), started once per session; and kubectl (v1.35, scripts/fetch-helm.sh)
pointed at it, as `kubectl create --raw` (this server has no discovery lists for kubectl's other verbs). Without the binaries the tests skip, naming the script and, when it ran and could
not reach Debian, the reason it recorded."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxlpool.testing.apiserver import ApiExtensionsServer

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / ".tools"
BIN = TOOLS / "bin"
CRD_FILES = sorted((ROOT / "crds").glob("*.yaml")) + sorted((ROOT / "charts" / "sdxlpool" / "crds").glob("*.yaml"))
POOL_CRD = ROOT / "crds" / "sdxlpools.sdxlpool.dev.yaml"  # read at test time: the CRD as it is now, never a copy

KubectlCreate = Callable[..., subprocess.CompletedProcess[str]]


def missing_reason(tools: Path = TOOLS) -> str | None:
    """Why the server cannot start here, or None when both binaries are in `tools`/bin; with the reason
    scripts/fetch-apiextensions.sh recorded when it last could not reach Debian."""
    missing = [name for name in ("apiextensions-apiserver", "etcd") if not (tools / "bin" / name).is_file()]
    if not missing:
        return None
    reason = f"{', '.join(missing)} not in .tools/bin: run `bash scripts/fetch-apiextensions.sh`"
    if (recorded := tools / "fetch-apiextensions.error").is_file():
        reason += f" (its last run: {recorded.read_text().strip()})"
    return reason


@pytest.fixture(scope="session")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiExtensionsServer]:
    """etcd and the apiextensions-apiserver on 127.0.0.1 with the pool CRD applied (from crds/, as it is now)."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    with ApiExtensionsServer(BIN / "apiextensions-apiserver", BIN / "etcd",
                             tmp_path_factory.mktemp("apiextensions")) as server:
        server.apply_crd(yaml.safe_load(POOL_CRD.read_text()))
        yield server


@pytest.fixture(scope="session")
def kubectl_create(apiserver: ApiExtensionsServer) -> KubectlCreate:
    """`kubectl create --raw PATH -f -` of one object, as JSON (.tools/bin/kubectl, from scripts/fetch-helm.sh).
    --raw needs no discovery (this server has no /api or /apis list) and prints the server's refusal the
    way `kubectl apply` does: 'The SDXLPool "x" is invalid: spec.gpus[0].replicas: Invalid value: ...'."""
    if not (BIN / "kubectl").is_file():
        pytest.skip("kubectl not in .tools/bin: run `bash scripts/fetch-helm.sh`")

    def create(body: dict[str, Any], namespace: str = "default") -> subprocess.CompletedProcess[str]:
        path = apiserver.object_path(body["apiVersion"], body["kind"], body["metadata"].get("namespace") or namespace)
        return subprocess.run([str(BIN / "kubectl"), "--kubeconfig", str(apiserver.kubeconfig), "create", "--raw", path,
                               "-f", "-"], input=json.dumps(body), capture_output=True, text=True, timeout=60, cwd=ROOT)

    return create


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
