"""Desired state of an SDXLPool: pure functions from (pool, nodes) to child manifests.

Contract: no I/O, no kopf, no Kubernetes client, no clock. Inputs are a validated
:class:`sdxlpool.api.spec.SDXLPool` and Node objects as plain mappings; outputs are plain dicts
ready to send to the API server, and a frozen :class:`DesiredState`. The kopf handlers and
``sdxlpool render`` both call :func:`desired_state`, so what ``render`` prints is what the operator
applies.

One module per concern: ``names`` (valid, unique child names), ``placement`` (node affinity from node labels), ``pods`` (security, probes),
``workers`` (worker Deployments), ``services``, ``gateway`` (RBAC + Deployment), ``policies``
(the workers' NetworkPolicy, PodDisruptionBudgets), ``state`` (the assembly). Labels, selectors,
annotations, ports and the workers' and gateway's command lines are contracts shared with other
parts: they live in :mod:`sdxlpool.api` (``labels``, ``ports``, ``pool_config``).
"""

from __future__ import annotations

from sdxlpool.operator.desired.names import child_name
from sdxlpool.operator.desired.placement import EntryPlacement, canonical_product_label, place_entry
from sdxlpool.operator.desired.services import gateway_url
from sdxlpool.operator.desired.state import DEFAULT_NAMESPACE, DesiredState, desired_state, identity

__all__ = [
    "DEFAULT_NAMESPACE",
    "DesiredState",
    "EntryPlacement",
    "canonical_product_label",
    "child_name",
    "desired_state",
    "gateway_url",
    "identity",
    "place_entry",
]
