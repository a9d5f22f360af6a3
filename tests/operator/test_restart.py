"""The operator converges after a restart: whatever changed while it was down is put right."""

from __future__ import annotations

import copy

from sdxlpool.testing.operator import OperatorThread
from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import NS, POOL, deployments, node


def test_changes_made_while_the_operator_was_down_are_reconciled(emulator, kube) -> None:
    kube.create(node("gpu-a", "NVIDIA-A100-SXM4-80GB"))
    body = copy.deepcopy(POOL)
    body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}, {"model": "RTX-3090", "replicas": 1}]
    with OperatorThread(emulator.kubeconfig):
        kube.create(body)
        eventually(lambda: set(deployments(kube)) == {"demo-a100", "demo-rtx-3090", "demo-gateway"})

    # Down: someone deletes a child, edits another, and the pool's spec changes.
    kube.delete("apps/v1", "Deployment", "demo-gateway", NS)
    kube.patch("apps/v1", "Deployment", "demo-a100", {"spec": {"replicas": 7}}, NS)
    spec = copy.deepcopy(body["spec"])
    spec["gpus"] = [{"model": "A100", "replicas": 2}]
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)

    with OperatorThread(emulator.kubeconfig):
        found = eventually(lambda: set(deployments(kube)) == {"demo-a100", "demo-gateway"}
                           and deployments(kube)["demo-a100"]["spec"]["replicas"] == 2 and deployments(kube))
        assert found["demo-gateway"]["metadata"]["ownerReferences"][0]["name"] == "demo"
        pool = kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", NS)
        eventually(lambda: kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", NS)["status"][
            "observedGeneration"] == pool["metadata"]["generation"])
