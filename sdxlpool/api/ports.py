"""Ports and paths every part agrees on: where a worker and a gateway listen, and what they serve.

Pure constants. The operator's Deployments, Services and probes, the gateway's Kubernetes
discovery (it reaches a worker pod at ``podIP:WORKER_PORT``), the Akash SDL export, ``sdxlpool up``
and the command line's defaults all take them from here.
"""

from __future__ import annotations

__all__ = [
    "DEMAND_PATH",
    "GATEWAY_PEER_PORT",
    "GATEWAY_PORT",
    "HEALTH_PATH",
    "LOCAL_WORKER_PORT",
    "METRICS_PATH",
    "READY_PATH",
    "WORKER_PORT",
]

WORKER_PORT = 7860
"""A worker's HTTP port (A1111's own default), in a pod and for ``sdxlpool worker`` alone."""

GATEWAY_PORT = 8080
"""The gateway's HTTP port, in a pod and for ``sdxlpool gateway`` / ``sdxlpool up``."""

GATEWAY_PEER_PORT = 8081
"""UDP: a gateway pod's replicas tell each other their dispatches here (``--peer-port``,
:mod:`sdxlpool.gateway.peers`)."""

LOCAL_WORKER_PORT = 7861
"""``sdxlpool up``'s first worker port (the next ones follow), clear of a lone worker on 7860."""

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
DEMAND_PATH = "/v1/demand"
"""The gateway's demand report for the autoscaler (JSON: :class:`sdxlpool.scaling.DemandReport`)."""
