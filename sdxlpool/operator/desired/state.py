"""``desired_state``: an SDXLPool and the cluster's Nodes -> every child manifest, in apply order.

Pure and deterministic: the same pool and nodes give equal manifests (dict for dict), so the
operator can compare them with what exists, and ``sdxlpool render`` prints exactly what the
operator would create. Owner references are not set here; the operator adds them when it adopts
a child.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sdxlpool.api.ports import WORKER_PORT
from sdxlpool.api.spec import PoolSpecError, SDXLPool
from sdxlpool.operator.desired.gateway import (
    gateway_deployment,
    gateway_role,
    gateway_role_binding,
    gateway_service_account,
)
from sdxlpool.operator.desired.names import child_name
from sdxlpool.operator.desired.placement import EntryPlacement, place_entry
from sdxlpool.operator.desired.policies import disruption_budget, worker_network_policy
from sdxlpool.operator.desired.services import gateway_service, worker_service
from sdxlpool.operator.desired.workers import worker_deployment

__all__ = ["DEFAULT_NAMESPACE", "DesiredState", "desired_state", "identity"]

DEFAULT_NAMESPACE = "default"


def identity(manifest: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """``(apiVersion, kind, namespace, name)`` of a manifest: what identifies it in a cluster."""
    metadata = manifest["metadata"]
    return manifest["apiVersion"], manifest["kind"], metadata.get("namespace", ""), metadata["name"]


@dataclass(frozen=True)
class DesiredState:
    """What a pool should consist of, and where each GPU entry's workers can run."""

    children: tuple[dict[str, Any], ...]
    """Manifests in apply order: ServiceAccount, Role, RoleBinding (gateway only), Services,
    the workers' NetworkPolicy (unless disabled), PodDisruptionBudgets and Deployments (one of
    each per GPU entry in spec order, then the gateway's)."""
    placements: Mapping[str, EntryPlacement]
    """Per GPU entry, keyed by slug, in spec order."""

    def of_kind(self, kind: str) -> tuple[dict[str, Any], ...]:
        """The children of one kind, in apply order."""
        return tuple(child for child in self.children if child["kind"] == kind)

    def identities(self) -> frozenset[tuple[str, str, str, str]]:
        """:func:`identity` of every child: what a reconcile keeps (the rest it may delete)."""
        return frozenset(identity(child) for child in self.children)


def desired_state(pool: SDXLPool, nodes: Sequence[Mapping[str, Any]] = (),
                  replicas: Mapping[str, int] | None = None) -> DesiredState:
    """Every child of ``pool`` given the cluster's ``nodes`` (Node objects as dicts).

    ``replicas`` (GPU slug -> workers) overrides entries' ``replicas``: the operator passes what its
    autoscaler runs, so a sync never reverts a scale; ``sdxlpool render`` passes none (the spec's).

    ``pool.metadata`` must have a ``name`` (``PoolSpecError`` otherwise); a missing namespace is
    ``default``.
    """
    name = pool.metadata.get("name")
    if not isinstance(name, str) or not name:
        raise PoolSpecError(["metadata.name: required field is missing"])
    namespace = str(pool.metadata.get("namespace") or DEFAULT_NAMESPACE)
    spec = pool.spec

    # 1. placement: which nodes each GPU entry may use, and its Deployment's name
    placements = {
        entry.slug: place_entry(entry, spec.placement, nodes, child_name(name, entry.slug)) for entry in spec.gpus
    }

    # 2. the gateway's identity and permissions (before anything that runs as it)
    gateway_name = child_name(name, "gateway")
    rbac: list[dict[str, Any]] = []
    services = [worker_service(name, namespace, child_name(name, "workers"), WORKER_PORT)]
    deployments = [
        worker_deployment(name, namespace, spec, entry, placements[entry.slug], (replicas or {}).get(entry.slug))
        for entry in spec.gpus
    ]

    # 3. the gateway's Service and Deployment, when the pool has one
    if spec.gateway.enabled:
        rbac = [
            gateway_service_account(name, namespace, gateway_name),
            gateway_role(name, namespace, gateway_name),
            gateway_role_binding(name, namespace, gateway_name),
        ]
        services.append(gateway_service(name, namespace, gateway_name, spec.gateway))
        deployments.append(gateway_deployment(name, namespace, gateway_name, spec))

    # 4. policies: who may connect to the workers, and how many pods a drain may evict at once
    policies = []
    if spec.network_policy.enabled:
        policies.append(
            worker_network_policy(name, namespace, child_name(name, "workers"), spec.network_policy, WORKER_PORT)
        )
    budgets = [disruption_budget(deployment) for deployment in deployments]

    # Deep copies: no two manifests share a nested list or dict, so callers may edit one freely.
    children = tuple(copy.deepcopy(child) for child in (*rbac, *services, *policies, *budgets, *deployments))
    return DesiredState(children=children, placements=MappingProxyType(placements))
