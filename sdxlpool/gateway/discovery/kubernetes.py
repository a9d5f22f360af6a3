"""Kubernetes discovery: the workers of one SDXLPool are its ready worker pods.

`backends_from_pods` (pure) turns pods into backends: those carrying the pool's worker selector
(`sdxlpool.dev/pool`, `app.kubernetes.io/component: worker`; checked here again, since not every
API server or emulator honours label selectors), Running, Ready, not being deleted, with a pod IP.
GPU model, provider, location and price come from the pod template's labels and annotations that
the operator writes.

`watch_pods` keeps that list current from a watch of the namespace's pods (in a thread: the
Kubernetes client is synchronous), restarting the watch when the server ends it or it fails.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sdxlpool.gateway.backends import Backend

__all__ = ["backends_from_pods", "watch_pods", "WORKER_PORT"]

log = logging.getLogger(__name__)
WORKER_PORT = 7860
_POOL, _COMPONENT, _GPU = "sdxlpool.dev/pool", "app.kubernetes.io/component", "sdxlpool.dev/gpu"
_GPU_MODEL, _PROVIDER = "sdxlpool.dev/gpu-model", "sdxlpool.dev/provider"
_LOCATION, _PRICE = "sdxlpool.dev/location", "sdxlpool.dev/price-per-hour"


def backends_from_pods(pods: Iterable[Mapping[str, Any]], pool_label: str, port: int = WORKER_PORT) -> list[Backend]:
    found = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
        if labels.get(_POOL) != pool_label or labels.get(_COMPONENT) != "worker" or meta.get("deletionTimestamp"):
            continue
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if status.get("phase") != "Running" or not ready or not status.get("podIP"):
            continue
        price = annotations.get(_PRICE) or None
        try:
            found.append(Backend.from_mapping({
                "name": meta["name"],
                "url": f"http://{status['podIP']}:{port}",
                "gpu": annotations.get(_GPU_MODEL) or labels.get(_GPU, ""),
                "provider": annotations.get(_PROVIDER, ""),
                "location": annotations.get(_LOCATION, ""),
                **({"pricePerHour": float(price)} if price else {}),
            }))
        except (ValueError, KeyError) as exc:
            log.warning("pod %s skipped: %s", meta.get("name"), exc)
    return sorted(found, key=lambda b: b.name)


async def watch_pods(namespace: str, pool_label: str, apply: Callable[[list[Backend]], None],
                     kubeconfig: str | None = None) -> None:
    """Keep `apply`ing the pool's ready workers until cancelled."""
    from sdxlpool._kube import KubeError, connect

    loop = asyncio.get_running_loop()
    stop = threading.Event()
    kube = connect(kubeconfig)

    def publish(pods: Mapping[str, Mapping[str, Any]]) -> None:
        loop.call_soon_threadsafe(apply, backends_from_pods(pods.values(), pool_label))

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
