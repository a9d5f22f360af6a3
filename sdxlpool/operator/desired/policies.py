"""Policies around the pool's pods: who may connect to the workers, and how many may be evicted.

Pure.

- ``<pool>-workers`` NetworkPolicy (``spec.networkPolicy.enabled``, the default): the pool's worker
  pods accept TCP on the worker port only from the pool's gateway pods and from pods of
  ``spec.networkPolicy.monitoringNamespace`` (selected by the ``kubernetes.io/metadata.name``
  label every namespace carries), so Prometheus can scrape ``/metrics``. Everything else, other
  pools' gateways included, is refused. Only ingress is restricted: workers download weights
  (egress) and kubelet probes are not pod-to-pod traffic. Enforcement is the CNI's job; a
  cluster without a NetworkPolicy-aware CNI accepts the object and ignores it.
- A PodDisruptionBudget per Deployment (each worker entry, and the gateway), named after it:
  ``maxUnavailable: 1``, matching the rollouts' ``maxUnavailable: 1``. A node drain then evicts one
  pod of a GPU model at a time, and a pool never loses a whole GPU model (or its gateway) to one
  drain. ``unhealthyPodEvictionPolicy: AlwaysAllow`` lets a pod that is not ready (still loading
  weights, or broken) be evicted regardless, so it never blocks a drain.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sdxlpool.api import labels as lbl
from sdxlpool.api.spec import NetworkPolicySpec

__all__ = ["disruption_budget", "worker_network_policy"]
"""Set by Kubernetes (>= 1.22) on every namespace to its name: what selects one namespace."""


def worker_network_policy(pool: str, namespace: str, name: str, policy: NetworkPolicySpec, port: int) -> dict[str, Any]:
    """Ingress to the pool's workers on ``port``: from its gateway, and from the monitoring namespace."""
    ports = [{"protocol": "TCP", "port": port}]
    ingress: list[dict[str, Any]] = [{"from": [{"podSelector": {"matchLabels": lbl.selector(pool, "gateway")}}],
                                      "ports": ports}]
    if policy.monitoring_namespace:
        monitoring = {"namespaceSelector": {"matchLabels": {lbl.NAMESPACE_NAME: policy.monitoring_namespace}}}
        ingress.append({"from": [monitoring], "ports": ports})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace, "labels": lbl.child_labels(pool, "worker")},
        "spec": {
            "podSelector": {"matchLabels": lbl.selector(pool, "worker")},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def disruption_budget(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """``maxUnavailable: 1`` over the pods of ``deployment``, with its name, labels and selector."""
    metadata = deployment["metadata"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": metadata["name"], "namespace": metadata["namespace"], "labels": dict(metadata["labels"])},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(deployment["spec"]["selector"]["matchLabels"])},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
