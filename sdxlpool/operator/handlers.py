"""kopf handlers: thin reactions that hand every SDXLPool to `reconcile.sync_pool`.

What the operator watches, and why:

* SDXLPools: created, resumed after an operator restart, spec changed -> sync now; a timer
  re-syncs each pool every `resync_seconds` as a safety net (drift kopf may have missed).
* Its children (Deployments, Services, ServiceAccounts, Roles, RoleBindings, NetworkPolicies,
  PodDisruptionBudgets labelled as ours):
  kept in kopf indexes, so a sync reads them from memory; any change or deletion of one syncs its
  pool, which repairs a child edited or deleted by hand and refreshes status from the Deployment.
* Nodes: their GPU labels, in an index; when they change, pools re-place their Deployments.
* Autoscaling: a second timer per pool, every `autoscale_seconds`, that works only for pools with
  `spec.autoscaling.enabled`: it reads the gateway's demand, scales the GPU models' Deployments
  (autoscale.py) and syncs the pool, whose reconcile renders the autoscaler's replicas.

Configuration: one `OperatorSettings`, handed in by `run_operator` (the CLI's and the tests' one
way in): the handlers are registered on a registry built for those settings (the timer's
interval), and read the rest from the operator's memo. Nothing is read at import time.

Retrying, as kopf's examples/03-exceptions: an API error that may pass (409 conflict, 429, 5xx, no
answer) is a `kopf.TemporaryError` whose delay doubles with each retry (`retry_seconds` up to
`retry_max_seconds`); one that will not pass by itself (400/422 an invalid object, 403 forbidden,
404 a kind the API server does not serve) is a `kopf.PermanentError`, and the pool's status says
why (Degraded, reason Rejected) until a spec change or the resync timer tries again. An invalid
spec is not an error at all: it is reported as a Degraded condition and waits for the next edit.

State per pool (a lock, so two reactions to the same pool never interleave; the status last
written; the pool's `Autoscaler` and what it decided) lives in the operator's memo (`PoolStates`) and is dropped when the pool is deleted.

Threads: the reactions are coroutines on kopf's event loop. They read kopf's indexes there, where
kopf updates them (read from a handler thread, an index could change size mid-iteration), and hand
only the blocking API calls of a sync to the operator's own pool of `workers` threads.
"""

from __future__ import annotations

import asyncio
import functools
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf

from sdxlpool._kube import KubeError, client_configuration, connect
from sdxlpool.api import labels as lbl
from sdxlpool.api.spec import GROUP, PLURAL, VERSION, PoolSpecError, load_pool
from sdxlpool.operator.autoscale import Autoscaled, autoscale_step
from sdxlpool.operator.reconcile import CHILD_KINDS, MANAGED, now_stamp, report_rejection, sync_pool
from sdxlpool.operator.settings import OperatorSettings
from sdxlpool.scaling import Autoscaler, policy_from_spec

__all__ = ["PoolState", "PoolStates", "build_registry", "run_operator"]

PoolKey = tuple[str, str]  # (namespace, name)
_PLURALS = {"ServiceAccount": "serviceaccounts", "Role": "roles", "RoleBinding": "rolebindings",
            "Service": "services", "NetworkPolicy": "networkpolicies",
            "PodDisruptionBudget": "poddisruptionbudgets", "Deployment": "deployments"}


_T = TypeVar("_T")


@dataclass
class PoolState:
    """What this operator keeps about one pool between two reactions."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The status this process last wrote, and for which pool uid: the pools index lags behind our
    # own writes, and comparing with a stale copy would rewrite the same status again and again.
    written_uid: str = ""
    written: dict[str, Any] | None = None
    # The pool's autoscaler (its history of recommendations: the delays), rebuilt when the spec's
    # policy changes, and what it last decided (the replicas a sync renders, status.autoscaling).
    autoscaler: Autoscaler | None = None
    autoscaled: Autoscaled | None = None


class PoolStates:
    """Every pool's `PoolState`, in the operator's memo (each resource's memo is a shallow copy of
    it, so all handlers share this one object); a deleted pool's entry is forgotten."""

    def __init__(self) -> None:
        self._states: dict[PoolKey, PoolState] = {}
        self._guard = threading.Lock()

    def of(self, key: PoolKey) -> PoolState:
        with self._guard:
            return self._states.setdefault(key, PoolState())

    def forget(self, key: PoolKey) -> None:
        with self._guard:
            self._states.pop(key, None)

    def __contains__(self, key: object) -> bool:
        with self._guard:
            return key in self._states


async def run_operator(settings: OperatorSettings, *, memo: kopf.Memo | None = None, **embedding: Any) -> None:
    """Run the operator with these settings until stopped. `memo` (the operator's, given to every
    handler) may be passed in to look at its state; `embedding`: kopf's stop_flag, ready_flag."""
    memo = memo if memo is not None else kopf.Memo()
    memo.settings = settings
    memo.pools = PoolStates()
    memo.api_threads = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="sdxlpool-sync")
    try:
        await kopf.operator(
            registry=build_registry(settings),
            memo=memo,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            standalone=settings.standalone,
            # A peering name makes kopf require the peering objects; standalone never has them, and
            # kopf would pause forever waiting, handling nothing.
            peering_name=None if settings.standalone else settings.peering,
            # Tied priorities make kopf freeze every replica; a random one lets exactly one work.
            priority=settings.priority if settings.priority is not None else random.randint(1, 2**30),
            liveness_endpoint=settings.liveness,
            **embedding,
        )
    finally:
        memo.api_threads.shutdown(wait=False, cancel_futures=True)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """Every handler below, registered for one operator (its timer's interval from `settings`)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(configure)
    # Indexes: what the operator knows without asking the API server.
    kopf.index(GROUP, VERSION, PLURAL, registry=registry)(pools)
    kopf.index("", "v1", "nodes", registry=registry)(gpu_nodes)
    for api_version, kind in CHILD_KINDS:
        _watch_children(registry, api_version, kind)
    # Reactions.
    kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)(pool_changed)
    kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)(pool_changed)
    kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)(pool_changed)
    kopf.timer(GROUP, VERSION, PLURAL, interval=settings.resync_seconds, initial_delay=settings.resync_seconds,
               idle=None, registry=registry)(pool_resync)
    kopf.timer(GROUP, VERSION, PLURAL, interval=settings.autoscale_seconds, initial_delay=settings.autoscale_seconds,
               idle=None, registry=registry)(pool_autoscale)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(pool_event)
    kopf.on.event("", "v1", "nodes", registry=registry)(node_changed)
    return registry


def login(memo: kopf.Memo, **kwargs: Any) -> kopf.ConnectionInfo | None:
    kubeconfig = memo.settings.kubeconfig
    if kubeconfig is None:  # in a pod: the service account; elsewhere ~/.kube/config
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
    # The kubeconfig the settings name, read by the client library (as `_kube.connect` reads it).
    configuration = client_configuration(kubeconfig)
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization") or ""
    scheme, _, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        username=configuration.username or None, password=configuration.password or None,
        scheme=scheme or None, token=token or None, certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file)


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our bookkeeping annotations live under our own domain, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="sdxlpool.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="sdxlpool.dev", key="last-handled-configuration")
    settings.posting.level = 30  # WARNING: only events a user should see land on their SDXLPool
    settings.execution.max_workers = memo.settings.workers
    memo.kube = connect(memo.settings.kubeconfig)


# -- indexes: what the operator knows without asking the API server ------------------------------

def pools(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    return {(namespace, name): _plain(body)}


def gpu_nodes(name: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    gpu_labels = {k: v for k, v in labels.items() if k.startswith(lbl.NODE_GPU_LABEL_PREFIXES)}
    return {None: {"metadata": {"name": name, "labels": gpu_labels}}}


def _watch_children(registry: kopf.OperatorRegistry, api_version: str, kind: str) -> None:
    group, _, version = api_version.rpartition("/")
    plural = _PLURALS[kind]

    def index(namespace: str | None, name: str, labels: kopf.Labels, body: kopf.Body, **_: Any) -> dict[Any, Any]:
        return {(namespace, labels.get(lbl.POOL, "")): _plain(body)}

    async def changed(namespace: str | None, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
        for body in list(kwargs["pools"].get((namespace, labels.get(lbl.POOL, ""))) or ()):
            await _sync(body, memo, kwargs)

    kopf.index(group, version, plural, labels=MANAGED, id=f"children_{plural}", registry=registry)(index)
    kopf.on.event(group, version, plural, labels=MANAGED, id=f"child_{plural}_changed", registry=registry)(changed)


async def pool_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _sync(_plain(body), memo, kwargs)


async def pool_resync(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    await _sync(_plain(body), memo, kwargs)


async def pool_autoscale(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """One autoscaler step for a pool with spec.autoscaling.enabled (others: nothing, no API call)."""
    plain = _plain(body)
    meta = plain["metadata"]
    key = (meta["namespace"], meta["name"])
    states: PoolStates = memo.pools
    if not ((plain.get("spec") or {}).get("autoscaling") or {}).get("enabled"):
        if key in states:  # switched off: forget its history, so switching on starts afresh
            state = states.of(key)
            state.autoscaler, state.autoscaled = None, None
        return
    state = states.of(key)
    async with state.lock:
        fresh = _current_pool(kwargs, key) or plain
        try:
            pool = load_pool(dict(fresh))
        except PoolSpecError:
            return  # the sync reports it (Degraded); nothing to size
        if not pool.spec.autoscaling.enabled:
            return
        policy = policy_from_spec(pool.spec)
        now = time.monotonic()
        if state.autoscaler is None or state.autoscaler.policy != policy:
            state.autoscaler = Autoscaler(policy, started_at=now)
        deployments = {child["metadata"]["name"]: child for child in kwargs["children_deployments"].get(key, ())}
        uid = fresh["metadata"].get("uid", "")
        last_status = (state.written if state.written_uid == uid else None) or fresh.get("status") or {}
        settings: OperatorSettings = memo.settings
        result = await _in_thread(memo, functools.partial(
            autoscale_step, memo.kube, pool, state.autoscaler, deployments,
            remembered=state.autoscaled.replicas if state.autoscaled else None,
            previous=last_status.get("autoscaling"), demand_url=settings.demand_url,
            timeout=settings.demand_timeout_seconds, now=now, stamp=now_stamp()))
        state.autoscaled = result.autoscaled
    for action in result.scaled:
        # A Normal event whatever kopf's posting level (kopf.info would obey it: WARNING here).
        # kopf reads any mapping here; its annotation asks for its own Body view of one
        kopf.event(dict(body), type="Normal", reason="Scaled", message=action.message[:1000])  # type: ignore[arg-type]
    if result.error is not None:
        logger.warning(f"Scaling refused: {result.error}")
    # The scaled Deployments as they are now (the index may not have heard yet), then one sync:
    # status (autoscaling and per GPU model desired) and drift repair with the new replicas.
    scaled = {action.deployment: action.desired for action in result.scaled}
    await _sync(fresh, memo, kwargs, scaled=scaled)


def pool_event(type: str, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    # No finalizer (deleting a pool must not wait for the operator): the watch's DELETED event is
    # the one sure sign that a pool is gone, and its state goes with it.
    if type == "DELETED":
        memo.pools.forget((namespace or "", name))


async def node_changed(name: str, labels: kopf.Labels, memo: kopf.Memo, **kwargs: Any) -> None:
    # Only a change in GPU labels moves placement; heartbeats and other churn are ignored. The
    # fingerprint lives in the node's own memo, which kopf drops with the node.
    fingerprints: dict[str, str] = memo.setdefault("node_gpu_labels", {})
    gpu_labels = json.dumps({k: v for k, v in labels.items() if k.startswith(lbl.NODE_GPU_LABEL_PREFIXES)}, sort_keys=True)
    event_type = kwargs.get("type")
    if event_type == "DELETED":
        gpu_labels = ""
    if fingerprints.get(name) == gpu_labels:
        return
    fingerprints[name] = gpu_labels
    for body in [body for _key, bodies in kwargs["pools"].items() for body in bodies]:
        await _sync(body, memo, kwargs)


# -- the one path every reaction takes -------------------------------------------------------------

async def _sync(body: Mapping[str, Any], memo: kopf.Memo, kwargs: Mapping[str, Any], *,
                scaled: Mapping[str, int] | None = None) -> None:
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    states: PoolStates = memo.pools
    state = states.of(key)
    async with state.lock:
        # The indexes are read here, on the event loop; sync_pool gets plain copies in a thread.
        fresh = _current_pool(kwargs, key) or body  # the index may hold a newer version than an event
        nodes = [node for bodies in kwargs["gpu_nodes"].values() for node in bodies]
        children = {
            kind: {child["metadata"]["name"]: child
                   for child in kwargs[f"children_{_PLURALS[kind[1]]}"].get(key, ())}
            for kind in CHILD_KINDS
        }
        for name, replicas in (scaled or {}).items():  # scaled just now: the index may lag behind
            deployment = children[("apps/v1", "Deployment")].get(name)
            if deployment is not None:
                deployment = children[("apps/v1", "Deployment")][name] = _plain(deployment)
                deployment.setdefault("spec", {})["replicas"] = replicas
        uid = fresh["metadata"].get("uid", "")
        last_status = state.written if state.written_uid == uid else None
        try:
            result = await _in_thread(memo, functools.partial(
                sync_pool, memo.kube, fresh, nodes=nodes, children=children, last_status=last_status,
                autoscaled=state.autoscaled))
            state.written_uid, state.written = uid, result.status
        except KubeError as exc:
            if exc.retryable:  # 409, 429, 5xx, no answer: it may pass
                delay = memo.settings.retry_delay(int(kwargs.get("retry") or 0))
                raise kopf.TemporaryError(f"Kubernetes API: {exc}", delay=delay) from exc
            message = f"the Kubernetes API refused a change: {exc}"
            try:
                state.written_uid, state.written = uid, await _in_thread(
                    memo, functools.partial(report_rejection, memo.kube, fresh, message, last_status))
            except KubeError as status_exc:  # e.g. forbidden to write status too: kopf logs both
                message += f" (and the status could not be written: {status_exc})"
            raise kopf.PermanentError(message) from exc
        finally:
            if _current_pool(kwargs, key) is None:  # deleted meanwhile: keep nothing of it
                states.forget(key)
    if result.changes:
        # kopf reads any mapping here; its annotation asks for its own Body view of one
        kopf.info(dict(body), reason="Synced", message=", ".join(result.changes)[:1000])  # type: ignore[arg-type]


async def _in_thread(memo: kopf.Memo, call: Callable[[], _T]) -> _T:
    """`call()` (blocking Kubernetes API calls) in the operator's threads, awaited on the loop."""
    return await asyncio.get_running_loop().run_in_executor(memo.api_threads, call)


def _current_pool(indexes: Mapping[str, Any], key: PoolKey) -> Mapping[str, Any] | None:
    for body in indexes["pools"].get(key, ()):
        return body
    return None


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached deep copy: kopf's bodies are live views that change under our feet."""
    return json.loads(json.dumps(dict(body), default=dict))
