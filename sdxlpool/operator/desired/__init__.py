"""Desired state of an SDXLPool: pure functions from (pool, nodes) to child manifests.

Contract: no I/O, no kopf, no Kubernetes client, no clock. Inputs are a validated
:class:`sdxlpool.api.spec.SDXLPool` and Node objects as plain mappings; outputs are plain dicts
ready to send to the API server, and a frozen :class:`DesiredState`. The kopf handlers and
``sdxlpool render`` both call :func:`desired_state`, so what ``render`` prints is what the operator
applies.

One module per concern: ``names`` (valid, unique child names), ``labels`` (labels, selectors,
annotations), ``placement`` (node affinity from node labels), ``pods`` (security, probes),
``workers`` (worker Deployments), ``services``, ``gateway`` (RBAC + Deployment), ``policies``
(the workers' NetworkPolicy, PodDisruptionBudgets), ``state`` (the assembly).
"""

from __future__ import annotations

from sdxlpool.operator.desired.labels import child_labels, selector
from sdxlpool.operator.desired.names import child_name, label_value
from sdxlpool.operator.desired.placement import (
    NVIDIA_PRODUCT_LABEL,
    EntryPlacement,
    canonical_product_label,
    place_entry,
)
from sdxlpool.operator.desired.policies import NAMESPACE_NAME_LABEL
from sdxlpool.operator.desired.services import GATEWAY_PORT
from sdxlpool.operator.desired.state import DEFAULT_NAMESPACE, DesiredState, desired_state, identity
from sdxlpool.operator.desired.workers import GPU_RESOURCE, WORKER_PORT, worker_args

__all__ = [
    "DEFAULT_NAMESPACE",
    "GATEWAY_PORT",
    "GPU_RESOURCE",
    "NAMESPACE_NAME_LABEL",
    "NVIDIA_PRODUCT_LABEL",
    "WORKER_PORT",
    "DesiredState",
    "EntryPlacement",
    "canonical_product_label",
    "child_labels",
    "child_name",
    "desired_state",
    "identity",
    "label_value",
    "place_entry",
    "selector",
    "worker_args",
]
