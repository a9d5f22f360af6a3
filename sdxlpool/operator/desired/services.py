"""The pool's Services: a headless one over its workers, and its gateway's.

Pure. ``<pool>-workers`` has no cluster IP: it exists for DNS (one A record per *ready* worker)
and for monitoring to find the workers; the gateway routes to pods itself, never through a
load-balanced Service, since which worker gets a request is the whole point of the gateway.
"""

from __future__ import annotations

from typing import Any

from sdxlpool.api import labels as lbl
from sdxlpool.api.ports import GATEWAY_PORT
from sdxlpool.api.spec import GatewaySpec

__all__ = ["gateway_service", "gateway_url", "worker_service"]


def worker_service(pool: str, namespace: str, name: str, port: int) -> dict[str, Any]:
    """Headless Service over every worker of the pool, port ``http``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": lbl.child_labels(pool, "worker")},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": False,
            "selector": lbl.selector(pool, "worker"),
            "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def gateway_url(namespace: str, name: str) -> str:
    """The gateway's in-cluster URL: its Service's DNS name and port (status.gatewayURL)."""
    return f"http://{name}.{namespace}.svc:{GATEWAY_PORT}"


def gateway_service(pool: str, namespace: str, name: str, gateway: GatewaySpec) -> dict[str, Any]:
    """The gateway's Service, of the configured type, on the gateway's port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": lbl.child_labels(pool, "gateway")},
        "spec": {
            "type": gateway.service_type,
            "selector": lbl.selector(pool, "gateway"),
            "ports": [{"name": "http", "port": GATEWAY_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }
