"""The real operator (kopf, in-process) against the emulated Kubernetes API on 127.0.0.1.

The test plays the other actors of a cluster: the user (kubectl apply/edit/delete), the node
labeller (GPU feature discovery) and the Deployment controller (it reports replicas ready).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sdxlpool.api import labels as lbl
from tests.operator.conftest import eventually

NS = "sdxl"
POOL = {
    "apiVersion": "sdxlpool.dev/v1alpha1",
    "kind": "SDXLPool",
    "metadata": {"name": "demo", "namespace": NS},
    "spec": {
        "image": "ghcr.io/example/sdxlpool-worker:1.0",
        "model": {"volume": {"claimName": "sdxl-weights", "basePath": "sd_xl_base_1.0.safetensors",
                             "refinerPath": "sd_xl_refiner_1.0.safetensors"}},
        "placement": {"labelScheme": "nvidia"},
        "gpus": [
            {"model": "A100", "replicas": 2, "provider": {"name": "Foundry Staking", "location": "US-East"},
             "pricePerHour": 1.1},
            {"model": "RTX-3090", "replicas": 4},
        ],
        "gateway": {"enabled": True, "replicas": 2},
    },
}


def node(name: str, product: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {lbl.NVIDIA_PRODUCT: product, "kubernetes.io/os": "linux"}}}


def deployments(kube, pool: str = "demo") -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in kube.list("apps/v1", "Deployment", NS)
            if d["metadata"].get("labels", {}).get(lbl.POOL) == pool}


def affinity_values(deployment: dict[str, Any]) -> set[str]:
    terms = deployment["spec"]["template"]["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    return {value for term in terms for expr in term["matchExpressions"] for value in expr.get("values", [])}


def condition(pool: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in pool.get("status", {}).get("conditions", []) if c["type"] == kind)


def get_pool(kube, name: str = "demo") -> dict[str, Any]:
    return kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", name, NS)


def controller_reports_ready(kube, name: str, ready: int) -> None:
    """Play the Deployment controller: the replicas are up."""
    current = kube.get("apps/v1", "Deployment", name, NS)
    kube.patch("apps/v1", "Deployment", name, {"status": {
        "observedGeneration": current["metadata"]["generation"], "replicas": ready, "readyReplicas": ready,
        "availableReplicas": ready, "updatedReplicas": ready}}, NS, status=True)


@pytest.fixture(scope="module")
def pool(operator, kube) -> dict[str, Any]:
    kube.create(node("gpu-a", "NVIDIA-A100-SXM4-80GB"))
    kube.create(node("gpu-b", "NVIDIA-A100-PCIE-40GB"))
    kube.create(copy.deepcopy(POOL))
    return POOL


def test_children_appear_with_placement(pool, kube) -> None:
    found = eventually(lambda: len(deployments(kube)) == 3 and deployments(kube))
    assert set(found) == {"demo-a100", "demo-rtx-3090", "demo-gateway"}
    a100 = found["demo-a100"]
    assert a100["spec"]["replicas"] == 2
    assert affinity_values(a100) == {"NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-PCIE-40GB"}
    owner = a100["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("SDXLPool", "demo", get_pool(kube)["metadata"]["uid"])
    assert kube.get("v1", "Service", "demo-workers", NS) is not None
    assert kube.get("v1", "Service", "demo-gateway", NS) is not None
    role = kube.get("rbac.authorization.k8s.io/v1", "Role", "demo-gateway", NS)
    assert role is not None and all("*" not in rule["verbs"] for rule in role["rules"])


def test_status_reports_placement_and_readiness(pool, kube) -> None:
    status = eventually(lambda: get_pool(kube).get("status", {}).get("gpus") and get_pool(kube)["status"])
    by_model = {g["model"]: g for g in status["gpus"]}
    assert by_model["A100"]["matchedNodes"] == ["gpu-a", "gpu-b"] and by_model["A100"]["desired"] == 2
    assert by_model["RTX-3090"]["matchedNodes"] == []
    degraded = condition(get_pool(kube), "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "NoMatchingNodes"
    assert "RTX-3090" in degraded["message"]
    assert condition(get_pool(kube), "Ready")["status"] == "False"

    # The Deployment controller brings the A100 replicas up: status follows.
    controller_reports_ready(kube, "demo-a100", 2)
    eventually(lambda: {g["model"]: g for g in get_pool(kube)["status"]["gpus"]}["A100"]["ready"] == 2)
    assert get_pool(kube)["status"]["summary"] == "2/6"
    # The gateway's in-cluster URL, for `kubectl get` (printer column Gateway) and for people.
    assert get_pool(kube)["status"]["gatewayURL"] == f"http://demo-gateway.{NS}.svc:8080"


def test_node_labels_appearing_update_affinity_and_status(pool, kube) -> None:
    kube.create(node("gpu-c", "NVIDIA-GeForce-RTX-3090"))
    eventually(lambda: affinity_values(deployments(kube)["demo-rtx-3090"]) == {"NVIDIA-GeForce-RTX-3090"})
    eventually(lambda: condition(get_pool(kube), "Degraded")["status"] == "False")
    for name, ready in (("demo-rtx-3090", 4), ("demo-gateway", 2)):
        controller_reports_ready(kube, name, ready)
    eventually(lambda: condition(get_pool(kube), "Ready")["status"] == "True")
    status = get_pool(kube)["status"]
    assert status["summary"] == "6/6" and status["observedGeneration"] == get_pool(kube)["metadata"]["generation"]


def test_spec_changes_patch_children(pool, kube) -> None:
    spec = copy.deepcopy(POOL["spec"])
    spec["gpus"][0]["replicas"] = 3
    spec["image"] = "ghcr.io/example/sdxlpool-worker:1.1"
    spec["gpus"].append({"model": "L40S", "replicas": 1})
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)
    found = eventually(lambda: "demo-l40s" in deployments(kube) and deployments(kube)["demo-a100"]["spec"][
        "replicas"] == 3 and deployments(kube))
    images = {c["image"] for c in found["demo-a100"]["spec"]["template"]["spec"]["containers"]}
    assert images == {"ghcr.io/example/sdxlpool-worker:1.1"}
    eventually(lambda: condition(get_pool(kube), "Ready")["status"] == "False")  # new replicas not up yet

    # Removing a GPU model deletes its Deployment.
    spec["gpus"] = [g for g in spec["gpus"] if g["model"] != "L40S"]
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)
    eventually(lambda: "demo-l40s" not in deployments(kube))


def test_loras_added_to_a_pool_reach_its_workers_and_leave_with_them(pool, kube) -> None:
    """Through the CRD (the emulator prunes what its schema does not know) to every worker Deployment."""
    spec = copy.deepcopy(get_pool(kube)["spec"])
    spec["loras"] = [{"huggingFace": {"repo": "nerijs/pixel-art-xl", "file": "pixel-art-xl.safetensors"}},
                     {"volume": {"path": "loras/ink.safetensors"}}]
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)

    def workers_told() -> dict[str, dict[str, Any]] | None:
        found = {name: d["spec"]["template"]["spec"] for name, d in deployments(kube).items() if name != "demo-gateway"}
        return found if all("--lora-dir" in p["containers"][0]["args"] for p in found.values()) else None

    for pod in eventually(workers_told).values():
        args = pod["containers"][0]["args"]
        assert args[args.index("--lora-dir") + 1] == "/fine-tunes/loras"
        (download,) = pod["initContainers"]
        assert download["command"][:4] == ["hf", "download", "nerijs/pixel-art-xl", "pixel-art-xl.safetensors"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        assert mounts["/fine-tunes/loras/volume/sdxl-weights/loras/ink.safetensors"]["subPath"] == "loras/ink.safetensors"

    spec.pop("loras")
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": {**spec, "loras": []}}, NS)
    eventually(lambda: all("--lora-dir" not in d["spec"]["template"]["spec"]["containers"][0]["args"]
                           and "initContainers" not in d["spec"]["template"]["spec"]
                           for d in deployments(kube).values()))


def test_children_edited_or_deleted_by_hand_are_repaired(pool, kube) -> None:
    # With the 2 s timer of these tests either path may repair; test_drift_repair.py proves the
    # event path (timer at 300 s) and the timer (events unable to) each on its own.
    eventually(lambda: "demo-a100" in deployments(kube))
    kube.patch("apps/v1", "Deployment", "demo-a100", {"spec": {"replicas": 9}}, NS)
    eventually(lambda: deployments(kube)["demo-a100"]["spec"]["replicas"] == 3)
    kube.delete("v1", "Service", "demo-workers", NS)
    eventually(lambda: kube.get("v1", "Service", "demo-workers", NS) is not None)
    kube.delete("apps/v1", "Deployment", "demo-rtx-3090", NS)
    eventually(lambda: "demo-rtx-3090" in deployments(kube))


def test_network_policy_and_budgets_are_kept(pool, kube) -> None:
    policy = eventually(lambda: kube.get("networking.k8s.io/v1", "NetworkPolicy", "demo-workers", NS))
    assert policy["spec"]["podSelector"]["matchLabels"] == {lbl.POOL: "demo",
                                                            lbl.COMPONENT: "worker"}
    assert policy["metadata"]["ownerReferences"][0]["name"] == "demo"
    budgets = eventually(lambda: {b["metadata"]["name"]: b for b in kube.list("policy/v1", "PodDisruptionBudget", NS)
                                  if b["metadata"].get("labels", {}).get(lbl.POOL) == "demo"}
                         .keys() == {"demo-a100", "demo-rtx-3090", "demo-gateway"})
    assert budgets
    # Deleted or loosened by hand: put back.
    kube.delete("networking.k8s.io/v1", "NetworkPolicy", "demo-workers", NS)
    eventually(lambda: kube.get("networking.k8s.io/v1", "NetworkPolicy", "demo-workers", NS) is not None)
    kube.patch("policy/v1", "PodDisruptionBudget", "demo-a100", {"spec": {"maxUnavailable": 5}}, NS)
    eventually(lambda: kube.get("policy/v1", "PodDisruptionBudget", "demo-a100", NS)["spec"]["maxUnavailable"] == 1)
    # A monitoring namespace edited in the spec reaches the policy; disabling it removes the policy.
    spec = copy.deepcopy(get_pool(kube)["spec"])
    spec["networkPolicy"] = {"enabled": True, "monitoringNamespace": "observability"}
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)
    eventually(lambda: kube.get("networking.k8s.io/v1", "NetworkPolicy", "demo-workers", NS)["spec"]["ingress"][1][
        "from"][0]["namespaceSelector"]["matchLabels"] == {lbl.NAMESPACE_NAME: "observability"})
    spec["networkPolicy"] = {"enabled": False}
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", {"spec": spec}, NS)
    eventually(lambda: kube.get("networking.k8s.io/v1", "NetworkPolicy", "demo-workers", NS) is None)


def test_invalid_pool_is_degraded_and_the_operator_lives_on(operator, pool, kube) -> None:
    bad = copy.deepcopy(POOL)
    bad["metadata"]["name"] = "broken"
    bad["spec"]["gpus"] = [{"model": "banana", "replicas": 1}, {"model": "A100", "replicas": -1}]
    kube.create(bad)
    degraded = eventually(lambda: condition(get_pool(kube, "broken"), "Degraded"))
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert "spec.gpus[0].model" in degraded["message"] and "spec.gpus[1].replicas" in degraded["message"]
    assert deployments(kube, "broken") == {}
    assert operator.alive
    # ... and other pools still work.
    good = copy.deepcopy(POOL)
    good["metadata"]["name"] = "second"
    good["spec"]["gpus"] = [{"model": "A100", "replicas": 1}]
    good["spec"]["gateway"] = {"enabled": False}
    kube.create(good)
    eventually(lambda: set(deployments(kube, "second")) == {"second-a100"})


def test_deleting_the_pool_deletes_its_children(pool, kube) -> None:
    kube.delete("sdxlpool.dev/v1alpha1", "SDXLPool", "demo", NS)
    eventually(lambda: deployments(kube) == {})
    assert kube.get("v1", "Service", "demo-workers", NS) is None
    assert kube.get("rbac.authorization.k8s.io/v1", "Role", "demo-gateway", NS) is None
