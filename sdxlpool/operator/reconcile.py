"""One synchronisation pass of an SDXLPool: its children made as desired, its status reported.

This is the I/O shell around the pure parts. Every write it makes is one that changes something,
so a pool at rest costs no API calls beyond kopf's own watches:

  1. validate the spec (an invalid one only gets a Degraded status; its children are left alone)
  2. render the desired children from spec + nodes (`sdxlpool render` prints the same), with the
     autoscaler's replicas for the GPU models it sizes (autoscale.py), so a sync never reverts a scale
  3. adopt each child: an owner reference to the pool, so deleting the pool deletes them
  4. create what is missing, patch what drifted (a child edited by hand is put back)
  5. delete children of this pool that the spec no longer asks for (a GPU model removed)
  6. report status from what the Deployments say (and the autoscaler's `status.autoscaling`),
     writing it only when it changed
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdxlpool._kube import KubeClient, KubeError
from sdxlpool.api import labels as lbl
from sdxlpool.api.spec import PoolSpecError, load_pool
from sdxlpool.operator.autoscale import Autoscaled, replicas_to_run
from sdxlpool.operator.drift import drift_patch
from sdxlpool.operator.status import (
    EntryObservation,
    invalid_spec_status,
    observe_deployment,
    pool_status,
    rejected_status,
)

__all__ = ["CHILD_KINDS", "ChildIndex", "SyncResult", "sync_pool", "report_rejection", "MANAGED", "now_stamp"]

MANAGED = {lbl.MANAGED_BY: lbl.MANAGER}
"""The label every child carries: what the operator's indexes and watches select."""
# What the operator creates, in the order it applies them (RBAC before what uses it).
CHILD_KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "Service"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("policy/v1", "PodDisruptionBudget"),
    ("apps/v1", "Deployment"),
)
# (apiVersion, kind) -> name -> observed body, for one pool.
ChildIndex = Mapping[tuple[str, str], Mapping[str, Mapping[str, Any]]]


@dataclass
class SyncResult:
    created: list[str] = field(default_factory=list)
    patched: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    status_written: bool = False
    invalid: bool = False

    @property
    def changes(self) -> list[str]:
        return [*self.created, *self.patched, *self.deleted]


def sync_pool(
    kube: KubeClient,
    pool_body: Mapping[str, Any],
    *,
    nodes: Sequence[Mapping[str, Any]],
    children: ChildIndex | None = None,
    last_status: Mapping[str, Any] | None = None,
    autoscaled: Autoscaled | None = None,
) -> SyncResult:
    """Sync one pool. `children` are its observed children (default: read from the API);
    `last_status` is the status this process wrote last, newer than a cached pool body may be;
    `autoscaled`: what this operator's autoscaler last decided for it (none: what its status says)."""
    import kopf

    from sdxlpool.operator.desired import desired_state, gateway_url

    result = SyncResult()
    meta = pool_body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    generation = int(meta.get("generation") or 1)
    previous = last_status or pool_body.get("status") or None
    now = now_stamp()

    # 1. Validate.
    try:
        pool = load_pool(dict(pool_body))
    except PoolSpecError as exc:
        result.invalid = True
        result.status = invalid_spec_status(generation=generation, problems=exc.problems, previous=previous, now=now)
        result.status_written = _write_status(kube, pool_body, result.status, previous)
        return result

    # 2. Desired children, with the replicas the autoscaler runs (none when it is off).
    reported = (previous or {}).get("autoscaling")
    replicas = replicas_to_run(pool.spec, autoscaled.replicas if autoscaled else None, reported)
    desired = desired_state(pool, nodes, replicas)
    observed = children if children is not None else _list_children(kube, namespace, name)

    owner_checked = False
    for child in desired.children:
        # 3. Adopt.
        # kopf reads any mapping as the owner; its annotation asks for its own Body view of one
        kopf.append_owner_reference(child, owner=pool_body)  # type: ignore[arg-type]
        key = (child["apiVersion"], child["kind"])
        child_name = child["metadata"]["name"]
        label = f"{child['kind']}/{child_name}"
        current = observed.get(key, {}).get(child_name)
        # 4. Create or repair.
        if current is None:
            # A child deleted with its pool (garbage collection) is seen before the pool's own
            # deletion reaches the watch: make sure the owner is still there before recreating.
            if not owner_checked and not _pool_exists(kube, pool_body):
                return result
            owner_checked = True
            try:
                kube.create(child)
                result.created.append(label)
            except KubeError as exc:
                if exc.status != 409:
                    raise
                # Created meanwhile (our cache lags behind our own writes): compare with the real one.
                current = kube.get(*key, child_name, namespace)
        if current is None:
            continue
        if (patch := drift_patch(child, current)) is not None:
            kube.patch(*key, child_name, patch, namespace)
            result.patched.append(label)

    # 5. Prune what the spec no longer asks for.
    wanted = {(c["apiVersion"], c["kind"], c["metadata"]["name"]) for c in desired.children}
    for (api_version, kind), bodies in observed.items():
        for child_name in bodies:
            if (api_version, kind, child_name) not in wanted:
                kube.delete(api_version, kind, child_name, namespace)
                result.deleted.append(f"{kind}/{child_name}")

    # 6. Status.
    deployments = dict(observed.get(("apps/v1", "Deployment"), {}))
    entries = [
        _entry(placement.model, placement.slug, _replicas(desired.children, placement.deployment),
               deployments.get(placement.deployment), placement)
        for placement in desired.placements.values()
    ]
    gateway_name = _gateway_deployment(desired.children)
    gateway = None
    if gateway_name is not None:
        gateway = _entry("gateway", "gateway", _replicas(desired.children, gateway_name),
                         deployments.get(gateway_name), None)
    result.status = pool_status(generation=generation, entries=entries, gateway=gateway, previous=previous, now=now,
                                gateway_url=gateway_url(namespace, gateway_name) if gateway_name else None)
    if pool.spec.autoscaling.enabled:  # its own report, or the one a previous operator left
        scaling = autoscaled.status if autoscaled is not None and autoscaled.status else reported
        if scaling:
            result.status["autoscaling"] = dict(scaling)
    result.status_written = _write_status(kube, pool_body, result.status, previous)
    return result


def report_rejection(kube: KubeClient, pool_body: Mapping[str, Any], message: str,
                     last_status: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The API server refused a change for good: say so in the pool's status (Degraded, Rejected).
    Returns the status reported; a status write that fails too is left to the caller's log."""
    previous = last_status or pool_body.get("status") or None
    generation = int(pool_body["metadata"].get("generation") or 1)
    status = rejected_status(generation=generation, message=message, previous=previous, now=now_stamp())
    _write_status(kube, pool_body, status, previous)
    return status


def now_stamp() -> str:
    """Now, as status timestamps write it (UTC, seconds)."""
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pool_exists(kube: KubeClient, pool_body: Mapping[str, Any]) -> bool:
    meta = pool_body["metadata"]
    current = kube.get(pool_body["apiVersion"], pool_body["kind"], meta["name"], meta["namespace"])
    return current is not None and current["metadata"].get("uid") == meta.get("uid") and not current[
        "metadata"].get("deletionTimestamp")


def _entry(model: str, slug: str, desired: int, deployment: Mapping[str, Any] | None,
           placement: Any) -> EntryObservation:
    seen = observe_deployment(deployment)
    return EntryObservation(
        model=model,
        slug=slug,
        desired=desired,
        ready=seen["ready"],
        available=seen["available"],
        updated=seen["updated"] if desired else 0,
        matched_nodes=tuple(placement.matched_nodes) if placement else (),
        placement_message=placement.message if placement else "",
        no_matching_nodes=bool(placement and placement.reason == "NoMatchingNodes"),
        rolled_out=seen["rolled_out"] or desired == 0,
        failure=seen["failure"],
    )


def _replicas(children: Iterable[Mapping[str, Any]], deployment: str) -> int:
    for child in children:
        if child["kind"] == "Deployment" and child["metadata"]["name"] == deployment:
            return int(child["spec"].get("replicas", 1))
    return 0


def _gateway_deployment(children: Iterable[Mapping[str, Any]]) -> str | None:
    for child in children:
        if child["kind"] == "Deployment" and child["metadata"].get("labels", {}).get(
                lbl.COMPONENT) == "gateway":
            return child["metadata"]["name"]
    return None


def _write_status(kube: KubeClient, pool_body: Mapping[str, Any], status: dict[str, Any],
                  previous: Mapping[str, Any] | None) -> bool:
    if previous is not None and dict(previous) == status:
        return False
    meta = pool_body["metadata"]
    # Keys we no longer report are nulled, so a merge patch removes them.
    stale = {key: None for key in (pool_body.get("status") or {}) if key not in status}
    kube.patch(pool_body["apiVersion"], pool_body["kind"], meta["name"], {"status": {**stale, **status}},
               meta["namespace"], status=True)
    return True


def _list_children(kube: KubeClient, namespace: str, pool: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Children read from the API (the CLI path; the operator reads its watch indexes instead)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for key in CHILD_KINDS:
        for body in kube.list(*key, namespace=namespace):
            labels = body.get("metadata", {}).get("labels") or {}
            if labels.get(lbl.POOL) == pool and labels.get(lbl.MANAGED_BY) == lbl.MANAGER:
                found.setdefault(key, {})[body["metadata"]["name"]] = body
    return found
