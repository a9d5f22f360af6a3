"""Kubernetes discovery: the workers of one SDXLPool are its ready worker pods.

`backends_from_pods` (pure) turns pods into backends: those carrying the pool's worker selector
(:func:`sdxlpool.api.labels.selector`; checked here again, since not every API server or emulator
honours label selectors), Running, Ready, not being deleted, with a pod IP. GPU model, provider,
location and price come from the pod template's labels and annotations that the operator writes
(the keys in :mod:`sdxlpool.api.labels`); the worker listens on :data:`sdxlpool.api.ports.WORKER_PORT`.

`peers_from_pods` (pure) finds the gateway's peers (`sdxlpool.gateway.peers`) among the same
pods: the pool's other gateway pods (the selector's component ``gateway``), Running, Ready, not
being deleted, with a pod IP, at the peer port; this replica's own pod is left out by its IP (the
downward API's ``status.podIP``, which the operator passes as ``POD_IP``).

`watch_pods` keeps that list current from a watch of the namespace's pods (in a thread: the
Kubernetes client is synchronous), restarting the watch when the server ends it or it fails; with a
`PeerWatch`, the peers too, from the same watch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sdxlpool.api import labels as lbl
from sdxlpool.api.ports import WORKER_PORT
from sdxlpool.gateway.backends import Backend
from sdxlpool.gateway.peers import PeerAddress

__all__ = ["PeerWatch", "backends_from_pods", "peers_from_pods", "watch_pods"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerWatch:
    """What `watch_pods` needs to report the gateway's peers: their port, this pod's IP (left out;
    None: nothing left out), and where to report them."""

    port: int
    own_ip: str | None
    apply: Callable[[list[PeerAddress]], None]


def _serving(pod: Mapping[str, Any], pool: str, component: lbl.Component) -> bool:
    """A pod of the pool's `component` that takes traffic: labelled, Running, Ready, not being
    deleted, with an IP."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(key) != value for key, value in lbl.selector(pool, component).items()):
        return False
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return (not meta.get("deletionTimestamp") and status.get("phase") == "Running" and ready
            and bool(status.get("podIP")))


def peers_from_pods(pods: Iterable[Mapping[str, Any]], pool: str, port: int, own_ip: str | None) -> list[PeerAddress]:
    """The other ready gateway pods of the SDXLPool named `pool` among `pods`, as (pod IP, `port`)."""
    ips = {pod["status"]["podIP"] for pod in pods if _serving(pod, pool, "gateway")}
    return [(ip, port) for ip in sorted(ips - {own_ip})]


def backends_from_pods(pods: Iterable[Mapping[str, Any]], pool: str, port: int = WORKER_PORT) -> list[Backend]:
    """The ready workers of the SDXLPool named `pool` among `pods`."""
    found = []
    for pod in pods:
        if not _serving(pod, pool, "worker"):
            continue
        meta, status = pod["metadata"], pod["status"]
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        price = annotations.get(lbl.ANNOTATION_PRICE) or None
        try:
            found.append(Backend.from_mapping({
                "name": meta["name"],
                "url": f"http://{status['podIP']}:{port}",
                "gpu": annotations.get(lbl.ANNOTATION_GPU_MODEL) or labels.get(lbl.GPU, ""),
                "provider": annotations.get(lbl.ANNOTATION_PROVIDER, ""),
                "location": annotations.get(lbl.ANNOTATION_LOCATION, ""),
                **({"pricePerHour": float(price)} if price else {}),
            }))
        except (ValueError, KeyError) as exc:
            log.warning("pod %s skipped: %s", meta.get("name"), exc)
    return sorted(found, key=lambda b: b.name)


async def watch_pods(namespace: str, pool: str, apply: Callable[[list[Backend]], None],
                     kubeconfig: str | None = None, peers: PeerWatch | None = None) -> None:
    """Keep `apply`ing the pool's ready workers (and `peers.apply`ing the other gateway pods) until cancelled."""
    from sdxlpool._kube import KubeError, connect

    loop = asyncio.get_running_loop()
    stop = threading.Event()
    kube = connect(kubeconfig)

    def publish(pods: Mapping[str, Mapping[str, Any]]) -> None:
        loop.call_soon_threadsafe(apply, backends_from_pods(pods.values(), pool))
        if peers is not None:
            loop.call_soon_threadsafe(peers.apply, peers_from_pods(pods.values(), pool, peers.port, peers.own_ip))

    def run() -> None:
        while not stop.is_set():
            try:
                # A full list first, applied once (a watch's opening burst would otherwise pass for
                # pods disappearing), then the changes.
                pods = {p["metadata"]["name"]: p for p in kube.list("v1", "Pod", namespace)}
                publish(pods)
                for kind, pod in kube.watch("v1", "Pod", namespace, timeout=60):
                    if stop.is_set():
                        return
                    name = pod.get("metadata", {}).get("name", "")
                    if kind == "DELETED":
                        pods.pop(name, None)
                    else:
                        pods[name] = pod
                    publish(pods)
            except KubeError as exc:
                log.warning("pod watch interrupted, retrying: %s", exc)
                time.sleep(1)

    thread = threading.Thread(target=run, daemon=True, name="pod-watch")
    thread.start()
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        stop.set()
        kube.close()  # ends the watch the thread is blocked in
