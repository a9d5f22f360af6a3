"""The pool's gateway: ServiceAccount, Role (read the pool's pods), RoleBinding, Deployment.

Pure. The gateway runs ``sdxlpool gateway --kubernetes --namespace NS --pool NAME --host 0.0.0.0
--port 8080`` (DESIGN.md) and discovers workers by watching pods with the labels of
:func:`sdxlpool.operator.desired.labels.selector` (``sdxlpool.dev/pool``, component ``worker``).
RBAC cannot narrow ``list``/``watch`` to labelled pods, so the Role grants ``get``, ``list`` and
``watch`` on pods of the pool's namespace: nothing else, no wildcards.

Settings without a DESIGN.md flag reach the gateway as environment variables (ignored by a
gateway that does not know them):

    SDXLPOOL_GATEWAY_RATE_LIMIT_PER_MINUTE, SDXLPOOL_GATEWAY_RATE_LIMIT_BURST   (gateway.rateLimit)
    SDXLPOOL_GATEWAY_MAX_STEPS, ..._MAX_PIXELS, ..._MAX_BATCH, ..._MAX_PROMPT_CHARS   (spec.limits)
"""

from __future__ import annotations

from typing import Any

from sdxlpool.api.spec import SDXLPoolSpec
from sdxlpool.operator.desired import labels as lbl
from sdxlpool.operator.desired.pods import (
    container_security_context,
    http_probe,
    image_pull_secrets,
    pod_security_context,
    resource_amounts,
    scratch_env,
    scratch_mount,
    scratch_volume,
)
from sdxlpool.operator.desired.services import GATEWAY_PORT

__all__ = [
    "gateway_args",
    "gateway_deployment",
    "gateway_role",
    "gateway_role_binding",
    "gateway_service_account",
]

_RBAC = "rbac.authorization.k8s.io"


def _metadata(pool: str, namespace: str, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "labels": lbl.child_labels(pool, "gateway")}


def gateway_service_account(pool: str, namespace: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(pool, namespace, name)}


def gateway_role(pool: str, namespace: str, name: str) -> dict[str, Any]:
    """Read-only access to pods: the gateway's Kubernetes discovery needs nothing more."""
    return {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "Role",
        "metadata": _metadata(pool, namespace, name),
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    }


def gateway_role_binding(pool: str, namespace: str, name: str) -> dict[str, Any]:
    """Binds the Role to the ServiceAccount (all three share ``name``)."""
    return {
        "apiVersion": f"{_RBAC}/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(pool, namespace, name),
        "roleRef": {"apiGroup": _RBAC, "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
    }


def gateway_args(pool: str, namespace: str) -> list[str]:
    """Arguments after ``sdxlpool``: the ``gateway`` sub-command in Kubernetes discovery mode."""
    return [
        "gateway", "--kubernetes", "--namespace", namespace, "--pool", pool,
        "--host", "0.0.0.0", "--port", str(GATEWAY_PORT),
    ]  # fmt: skip


def _gateway_env(spec: SDXLPoolSpec) -> list[dict[str, str]]:
    env = scratch_env()
    limit = spec.gateway.rate_limit
    if limit is not None:
        env += [
            {"name": "SDXLPOOL_GATEWAY_RATE_LIMIT_PER_MINUTE", "value": str(limit.requests_per_minute)},
            {"name": "SDXLPOOL_GATEWAY_RATE_LIMIT_BURST", "value": str(limit.burst)},
        ]
    limits = spec.limits
    env += [
        {"name": "SDXLPOOL_GATEWAY_MAX_STEPS", "value": str(limits.max_steps)},
        {"name": "SDXLPOOL_GATEWAY_MAX_PIXELS", "value": str(limits.max_pixels)},
        {"name": "SDXLPOOL_GATEWAY_MAX_BATCH", "value": str(limits.max_batch)},
        {"name": "SDXLPOOL_GATEWAY_MAX_PROMPT_CHARS", "value": str(limits.max_prompt_chars)},
    ]
    return env


def gateway_deployment(pool: str, namespace: str, name: str, spec: SDXLPoolSpec) -> dict[str, Any]:
    """The gateway Deployment; it runs as the ServiceAccount ``name``."""
    gateway = spec.gateway
    container = {
        "name": "gateway",
        "image": gateway.image or spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["sdxlpool"],
        "args": gateway_args(pool, namespace),
        "env": _gateway_env(spec),
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "resources": resource_amounts(gateway.resources),
        "volumeMounts": [scratch_mount()],
        "readinessProbe": http_probe("/readyz", period=5, failures=3),
        "livenessProbe": http_probe("/healthz", period=10, failures=3),
        "securityContext": container_security_context(),
    }
    pod: dict[str, Any] = {
        "serviceAccountName": name,
        "automountServiceAccountToken": True,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
    }
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = image_pull_secrets(spec)
    pod["containers"] = [container]
    pod["volumes"] = [scratch_volume()]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(pool, namespace, name),
        "spec": {
            "replicas": gateway.replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": lbl.selector(pool, "gateway")},
            "template": {
                "metadata": {
                    "labels": lbl.child_labels(pool, "gateway"),
                    "annotations": lbl.scrape_annotations(GATEWAY_PORT),
                },
                "spec": pod,
            },
        },
    }
