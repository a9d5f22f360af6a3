"""kopf handlers: thin reactions that hand every SDXLPool to `reconcile.sync_pool`.

What the operator watches, and why:

* SDXLPools: created, resumed after an operator restart, spec changed -> sync now; a timer
  re-syncs each pool now and then as a safety net (drift kopf may have missed).
* Its children (Deployments, Services, ServiceAccounts, Roles, RoleBindings, NetworkPolicies,
  PodDisruptionBudgets labelled as ours):
  kept in kopf indexes, so a sync reads them from memory; any change or deletion of one syncs its
  pool, which repairs a child edited or deleted by hand and refreshes status from the Deployment.
* Nodes: their GPU labels, in an index; when they change, pools re-place their Deployments.

Retrying: an API error that may pass (409, 429, 5xx, no answer) is a `kopf.TemporaryError` with a
delay; an invalid spec is not an error at all: it is reported as a Degraded condition and waits for
the next edit. Handlers are sync functions (kopf runs them in threads); one lock per pool keeps two
reactions to the same pool from interleaving.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import kopf

from sdxlpool._kube import KubeError, connect
from sdxlpool.api.spec import GROUP, PLURAL, VERSION
from sdxlpool.operator.reconcile import CHILD_KINDS, MANAGED_BY, POOL_LABEL, sync_pool

RESYNC_SECONDS = float(os.environ.get("SDXLPOOL_OPERATOR_RESYNC_SECONDS", "300"))
_MANAGED = {MANAGED_BY[0]: MANAGED_BY[1]}
_GPU_LABEL_PREFIXES = ("nvidia.com/gpu", "akash.network/capabilities.gpu")
_locks: dict[tuple[str, str], threading.Lock] = {}
# The status this process last wrote per pool: the pools index lags behind our own writes, and
# comparing with a stale copy would rewrite the same status again and again.
_written: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
_locks_guard = threading.Lock()


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # In a pod: the service account. Elsewhere: $KUBECONFIG, read now (kopf's default login goes
    # through the kubernetes library, which reads it once, at its first import).
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our bookkeeping annotations live under our own domain, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="sdxlpool.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="sdxlpool.dev", key="last-handled-configuration")
    settings.posting.level = 30  # WARNING: only events a user should see land on their SDXLPool
    settings.execution.max_workers = int(os.environ.get("SDXLPOOL_OPERATOR_WORKERS", "8"))
    memo.kube = connect(os.environ.get("SDXLPOOL_KUBECONFIG") or None)


# -- indexes: what the operator knows without asking the API server ------------------------------

@kopf.index(GROUP, VERSION, PLURAL)
def pools(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _plain(body)}


@kopf.index("", "v1", "nodes")
def gpu_nodes(name: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    gpu_labels = {k: v for k, v in labels.items() if k.startswith(_GPU_LABEL_PREFIXES)}
    return {None: {"metadata": {"name": name, "labels": gpu_labels}}}


_PLURALS = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
            "Service": "services", "NetworkPolicy": "networkpolicies",
            "PodDisruptionBudget": "poddisruptionbudgets", "Deployment": "deployments"}


def _child_index(api_version: str, kind: str) -> None:
    group, _, version = api_version.rpartition("/")
    plural = _PLURALS[kind]

    def index(namespace: str | None, name: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, labels.get(POOL_LABEL, "")): _plain(body)}

    def changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
        pool = kwargs["pools"].get((namespace, labels.get(POOL_LABEL, "")))
        for body in pool or ():
            _sync(body, memo, kwargs)

    kopf.index(group, version, plural, labels=_MANAGED, id=f"children_{plural}")(index)
    kopf.on.event(group, version, plural, labels=_MANAGED, id=f"child_{plural}_changed")(changed)


for _api_version, _kind in CHILD_KINDS:
    _child_index(_api_version, _kind)


# -- reactions -------------------------------------------------------------------------------------

@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def pool_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    _sync(_plain(body), memo, kwargs)


@kopf.timer(GROUP, VERSION, PLURAL, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=None)
def pool_resync(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    _sync(_plain(body), memo, kwargs)


@kopf.on.event("", "v1", "nodes")
def node_changed(name: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    # Only a change in GPU labels moves placement; heartbeats and other churn are ignored.
    fingerprints: dict[str, str] = memo.setdefault("node_gpu_labels", {})
    gpu_labels = json.dumps({k: v for k, v in labels.items() if k.startswith(_GPU_LABEL_PREFIXES)}, sort_keys=True)
    event_type = kwargs.get("type")
    if event_type == "DELETED":
        gpu_labels = ""
    if fingerprints.get(name) == gpu_labels:
        return
    fingerprints[name] = gpu_labels
    for _key, bodies in kwargs["pools"].items():
        for body in bodies:
            _sync(body, memo, kwargs)


# -- the one path every reaction takes -------------------------------------------------------------

def _sync(body: Mapping[str, Any], memo: kopf.Memo, indexes: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    with _lock_for(key):
        fresh = _current_pool(indexes, key) or body  # the index may hold a newer version than an event
        nodes = [node for bodies in indexes["gpu_nodes"].values() for node in bodies]
        children = {
            kind: {child["metadata"]["name"]: child
                   for child in indexes[f"children_{_PLURALS[kind[1]]}"].get(key, ())}
            for kind in CHILD_KINDS
        }
        uid = fresh["metadata"].get("uid", "")
        written_uid, written = _written.get(key, ("", None))
        try:
            result = sync_pool(memo.kube, fresh, nodes=nodes, children=children,
                               last_status=written if written_uid == uid else None)
            _written[key] = (uid, result.status)
        except KubeError as exc:
            if exc.retryable:
                raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=10) from exc
            raise
    if result.changes:
        # kopf reads any mapping here; its annotation asks for its own Body view of one
        kopf.info(dict(body), reason="Synced", message=", ".join(result.changes)[:1000])  # type: ignore[arg-type]


def _current_pool(indexes: Mapping[str, Any], key: tuple[str, str]) -> Mapping[str, Any] | None:
    for body in indexes["pools"].get(key, ()):
        return body
    return None


def _lock_for(key: tuple[str, str]) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached deep copy: kopf's bodies are live views that change under our feet."""
    return json.loads(json.dumps(dict(body), default=dict))
