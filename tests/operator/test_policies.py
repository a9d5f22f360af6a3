"""The pool's NetworkPolicy, PodDisruptionBudgets and the gateway's API keys Secret, from
desired_state: who may reach the workers, how far a drain may go, and secrets only by reference.
Every manifest is validated by kubernetes-validate (strict, Kubernetes 1.35)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pytest

from sdxlpool.api.labels import NAMESPACE_NAME as NAMESPACE_NAME_LABEL
from sdxlpool.api.ports import WORKER_PORT
from sdxlpool.api.spec import PoolSpecError, load_pool
from sdxlpool.operator.desired import DesiredState, desired_state
from sdxlpool.operator.desired.gateway import API_KEYS_PATH
from tests.operator.test_desired_state import pod_spec, pool_data, restricted_violations

TWO_MODELS = [{"model": "A100", "replicas": 2}, {"model": "RTX-3090", "replicas": 1}]


def state_of(**spec: Any) -> DesiredState:
    return desired_state(load_pool(pool_data(gpus=copy.deepcopy(TWO_MODELS), **spec)))


def matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector with matchLabels only (all these policies use) against a label set."""
    assert set(selector) == {"matchLabels"}, selector
    return selector["matchLabels"].items() <= labels.items()


def pod_labels(state: DesiredState) -> dict[str, dict[str, str]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in state.of_kind("Deployment")}


def test_every_manifest_is_valid_kubernetes() -> None:
    for state in (state_of(), state_of(gateway={"apiKeysSecret": {"name": "gw-keys"}}),
                  state_of(networkPolicy={"monitoringNamespace": None})):
        for child in state.children:
            kubernetes_validate.validate(child, "1.35", strict=True)


# --- NetworkPolicy ---------------------------------------------------------------------------------

def test_network_policy_selects_exactly_the_pools_workers() -> None:
    state = state_of()
    (policy,) = state.of_kind("NetworkPolicy")
    assert policy["metadata"]["name"] == "demo-workers"
    assert policy["spec"]["policyTypes"] == ["Ingress"]  # egress (weight downloads) is left alone
    chosen = {name for name, labels in pod_labels(state).items() if matches(policy["spec"]["podSelector"], labels)}
    assert chosen == {"demo-a100", "demo-rtx-3090"}  # not the gateway


def test_network_policy_admits_the_pools_gateway_and_monitoring_only() -> None:
    state = state_of()
    (policy,) = state.of_kind("NetworkPolicy")
    gateway_rule, monitoring_rule = policy["spec"]["ingress"]
    for rule in (gateway_rule, monitoring_rule):
        assert rule["ports"] == [{"protocol": "TCP", "port": WORKER_PORT}]
    # The gateway rule admits the pool's own gateway pods (same namespace: no namespaceSelector) ...
    (peer,) = gateway_rule["from"]
    assert set(peer) == {"podSelector"}
    admitted = {name for name, labels in pod_labels(state).items() if matches(peer["podSelector"], labels)}
    assert admitted == {"demo-gateway"}
    # ... and not another pool's gateway in the same namespace.
    other = desired_state(load_pool(pool_data(name="other")))
    other_gateway = next(d for d in other.of_kind("Deployment") if d["metadata"]["name"] == "other-gateway")
    assert not matches(peer["podSelector"], other_gateway["spec"]["template"]["metadata"]["labels"])
    # Monitoring: every pod of the monitoring namespace, by the name label Kubernetes sets.
    assert monitoring_rule["from"] == [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "monitoring"}}}]


def test_worker_port_is_the_containers() -> None:
    state = state_of()
    (policy,) = state.of_kind("NetworkPolicy")
    for dep in state.of_kind("Deployment"):
        if dep["metadata"]["name"] != "demo-gateway":
            ports = pod_spec(dep)["containers"][0]["ports"]
            assert [p["containerPort"] for p in ports] == [policy["spec"]["ingress"][0]["ports"][0]["port"]]


def test_monitoring_namespace_is_configurable_or_none() -> None:
    (policy,) = state_of(networkPolicy={"monitoringNamespace": "observability"}).of_kind("NetworkPolicy")
    assert policy["spec"]["ingress"][1]["from"][0]["namespaceSelector"]["matchLabels"] == {
        NAMESPACE_NAME_LABEL: "observability"}
    (policy,) = state_of(networkPolicy={"monitoringNamespace": None}).of_kind("NetworkPolicy")
    assert len(policy["spec"]["ingress"]) == 1  # only the gateway


def test_network_policy_can_be_disabled() -> None:
    assert state_of(networkPolicy={"enabled": False}).of_kind("NetworkPolicy") == ()


@pytest.mark.parametrize("bad", [
    {"monitoringNamespace": "Monitoring_NS"},
    {"monitoringNamespace": "x" * 64},
    {"enabled": "sometimes"},
    {"namespace": "monitoring"},
], ids=["not-a-dns-label", "too-long", "not-a-bool", "unknown-key"])
def test_bad_network_policy_spec_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(PoolSpecError, match=r"spec\.networkPolicy"):
        load_pool(pool_data(networkPolicy=bad))


# --- PodDisruptionBudgets --------------------------------------------------------------------------

def test_one_disruption_budget_per_deployment() -> None:
    state = state_of()
    budgets = {b["metadata"]["name"]: b for b in state.of_kind("PodDisruptionBudget")}
    deployments = {d["metadata"]["name"]: d for d in state.of_kind("Deployment")}
    assert set(budgets) == set(deployments) == {"demo-a100", "demo-rtx-3090", "demo-gateway"}
    for name, budget in budgets.items():
        spec = budget["spec"]
        assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec
        assert spec["unhealthyPodEvictionPolicy"] == "AlwaysAllow"  # a pod still loading never blocks a drain
        chosen = {n for n, labels in pod_labels(state).items() if matches(spec["selector"], labels)}
        assert chosen == {name}
        assert budget["metadata"]["labels"] == deployments[name]["metadata"]["labels"]
        # The rollout and the budget agree: one pod of a GPU model away at a time.
        if name != "demo-gateway":
            assert deployments[name]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1


def test_no_gateway_no_gateway_budget() -> None:
    state = state_of(gateway={"enabled": False})
    assert [b["metadata"]["name"] for b in state.of_kind("PodDisruptionBudget")] == ["demo-a100", "demo-rtx-3090"]


# --- the gateway's API keys, from a Secret ---------------------------------------------------------

def gateway_of(state: DesiredState) -> dict[str, Any]:
    return next(d for d in state.of_kind("Deployment") if d["metadata"]["name"] == "demo-gateway")


def test_api_keys_come_from_a_secret_volume() -> None:
    gateway = gateway_of(state_of(gateway={"apiKeysSecret": {"name": "gw-keys", "key": "keys.yaml"}}))
    pod = pod_spec(gateway)
    (container,) = pod["containers"]
    args = container["args"]
    assert args[args.index("--api-keys") + 1] == API_KEYS_PATH
    volume = next(v for v in pod["volumes"] if v["name"] == "api-keys")
    assert volume["secret"] == {"secretName": "gw-keys", "items": [{"key": "keys.yaml", "path": "keys.yaml"}],
                                "defaultMode": 0o440}
    mount = next(m for m in container["volumeMounts"] if m["name"] == "api-keys")
    # A whole-directory mount (no subPath), so Secret edits reach the pod and the gateway reloads them.
    assert mount["readOnly"] is True and "subPath" not in mount
    assert API_KEYS_PATH.startswith(mount["mountPath"] + "/")
    assert restricted_violations(pod) == []
    # Nothing secret is in the manifest itself: no env values, only the reference.
    assert not any("API_KEY" in e["name"] for e in container["env"])


def test_api_keys_args_parse_with_the_real_cli() -> None:
    from sdxlpool.cli import _build_parser

    gateway = gateway_of(state_of(gateway={"apiKeysSecret": {"name": "gw-keys"}}))
    parsed = _build_parser().parse_args(pod_spec(gateway)["containers"][0]["args"])
    assert str(parsed.api_keys) == API_KEYS_PATH and parsed.kubernetes is True


def test_without_api_keys_the_gateway_has_no_secret() -> None:
    pod = pod_spec(gateway_of(state_of()))
    assert "--api-keys" not in pod["containers"][0]["args"]
    assert [v["name"] for v in pod["volumes"]] == ["tmp"]


def test_hugging_face_token_is_only_a_secret_reference() -> None:
    hub = {"huggingFace": {"repo": "stabilityai/stable-diffusion-xl-base-1.0", "tokenSecret": {"name": "hf-token"}}}
    state = desired_state(load_pool(pool_data(model=hub)))
    for dep in state.of_kind("Deployment"):
        for container in pod_spec(dep).get("initContainers", []):
            token = next(e for e in container["env"] if e["name"] == "HF_TOKEN")
            assert token == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}


@pytest.mark.parametrize("bad", [{"key": "keys.yaml"}, {"name": "k", "key": "../etc/passwd"}, {"name": ""}],
                         ids=["no-name", "path-in-key", "empty-name"])
def test_bad_api_keys_secret_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(PoolSpecError, match=r"spec\.gateway\.apiKeysSecret"):
        load_pool(pool_data(gateway={"apiKeysSecret": bad}))
