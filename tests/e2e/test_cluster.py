"""The operator against a real cluster (kind or k3d), when SDXLPOOL_E2E_KUBECONFIG names one.

    kind create cluster --name sdxlpool
    kind get kubeconfig --name sdxlpool > /tmp/kind.yaml
    SDXLPOOL_E2E_KUBECONFIG=/tmp/kind.yaml python -m pytest tests/e2e -v

The cluster needs no GPU: a worker node is labelled as if it carried an A100, so Deployments are
placed (their pods then wait for an `nvidia.com/gpu` the node does not have, which is fine: the
scenarios check what the operator creates, repairs and reports). The real garbage collector and
Deployment controller take part. Everything happens in the namespace `sdxlpool-e2e`, deleted at
the end; the CRD is installed from crds/ and left in place.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sdxlpool.api import labels as lbl
from sdxlpool.testing.operator import OperatorThread
from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import POOL, affinity_values, condition

KUBECONFIG = os.environ.get("SDXLPOOL_E2E_KUBECONFIG")
pytestmark = pytest.mark.skipif(not KUBECONFIG, reason="SDXLPOOL_E2E_KUBECONFIG not set: no real cluster")
NS = "sdxlpool-e2e"
CRD = Path(__file__).resolve().parents[2] / "crds" / "sdxlpools.sdxlpool.dev.yaml"


@pytest.fixture(scope="module")
def kube():
    from sdxlpool._kube import connect

    return connect(KUBECONFIG)


@pytest.fixture(scope="module")
def cluster(kube) -> Iterator[str]:
    """CRD installed, namespace created, one node labelled as an A100 node; yields that node's name."""
    crd = yaml.safe_load(CRD.read_text())
    if kube.get(crd["apiVersion"], crd["kind"], crd["metadata"]["name"]) is None:
        kube.create(crd)
    eventually(lambda: served(kube), timeout=60)
    if kube.get("v1", "Namespace", NS) is None:
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    node = kube.list("v1", "Node")[-1]["metadata"]["name"]
    kube.patch("v1", "Node", node, {"metadata": {"labels": {lbl.NVIDIA_PRODUCT: "NVIDIA-A100-SXM4-80GB"}}})
    try:
        yield node
    finally:
        kube.delete("v1", "Namespace", NS)
        kube.patch("v1", "Node", node, {"metadata": {"labels": {lbl.NVIDIA_PRODUCT: None}}})


def served(kube) -> bool:
    """The API server serves SDXLPools (a new CRD takes a moment to be established)."""
    from sdxlpool._kube import KubeError

    try:
        kube.list("sdxlpool.dev/v1alpha1", "SDXLPool", NS)
        return True
    except KubeError:
        return False


@pytest.fixture(scope="module")
def operator(cluster) -> Iterator[OperatorThread]:
    with OperatorThread(Path(KUBECONFIG or ""), namespaces=[NS]) as running:
        yield running


def deployments(kube, pool: str = "demo") -> dict:
    return {d["metadata"]["name"]: d for d in kube.list("apps/v1", "Deployment", NS)
            if d["metadata"].get("labels", {}).get(lbl.POOL) == pool}


def test_pool_lifecycle_on_a_real_cluster(operator, kube) -> None:
    body = copy.deepcopy(POOL)
    body["metadata"]["namespace"] = NS
    kube.create(body)
    found = eventually(lambda: len(deployments(kube)) == 3 and deployments(kube), timeout=60)
    assert affinity_values(found["demo-a100"]) == {"NVIDIA-A100-SXM4-80GB"}
    pool = kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", NS)
    eventually(lambda: condition(kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", NS), "Degraded")[
        "reason"] == "NoMatchingNodes", timeout=60)  # no RTX-3090 node in this cluster
    assert pool["metadata"]["uid"] == found["demo-a100"]["metadata"]["ownerReferences"][0]["uid"]

    # Scale, and repair a hand edit; the real Deployment controller is running too.
    spec = copy.deepcopy(body["spec"])
    spec["gpus"][0]["replicas"] = 1
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)
    eventually(lambda: deployments(kube)["demo-a100"]["spec"]["replicas"] == 1, timeout=60)
    kube.delete("v1", "Service", "demo-workers", NS)
    eventually(lambda: kube.get("v1", "Service", "demo-workers", NS) is not None, timeout=60)

    # Delete: the cluster's garbage collector removes the children.
    kube.delete("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", NS)
    eventually(lambda: deployments(kube) == {}, timeout=120)


def test_invalid_pool_is_degraded_on_a_real_cluster(operator, kube) -> None:
    body = copy.deepcopy(POOL)
    body["metadata"].update(name="broken", namespace=NS)
    body["spec"]["gpus"] = [{"model": "banana"}]  # the CRD schema cannot know GPU names; the operator does
    kube.create(body)
    degraded = eventually(lambda: condition(kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", "broken", NS),
                                            "Degraded"), timeout=60)
    assert degraded["reason"] == "InvalidSpec" and "spec.gpus[0].model" in degraded["message"]
    assert operator.alive
