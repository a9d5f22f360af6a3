"""The pool's gateway: ServiceAccount, Role (read the pool's pods), RoleBinding, Deployment.

Pure. The gateway runs ``sdxlpool gateway --kubernetes --namespace NS --pool NAME --host 0.0.0.0
--port 8080`` plus the pool's rate limit, limits and defaults as flags
(:func:`sdxlpool.api.pool_config.gateway_args`, shared with the Akash export and ``sdxlpool up``),
and discovers workers by watching pods with the labels of :func:`sdxlpool.api.labels.selector`
(``sdxlpool.dev/pool``, component ``worker``).

Its replicas share their dispatches (:mod:`sdxlpool.gateway.peers`): ``--peer-port 8081`` (UDP,
container port ``peers``), and each finds the others in the same pod watch (component ``gateway``),
leaving itself out by ``POD_IP`` (the downward API's ``status.podIP``). Only the gateway pods talk
on that port; the workers' NetworkPolicy does not cover gateway pods.
RBAC cannot narrow ``list``/``watch`` to labelled pods, so the Role grants ``get``, ``list`` and
``watch`` on pods of the pool's namespace: nothing else, no wildcards.

With ``gateway.apiKeysSecret``, that Secret's key is mounted read-only (a Secret volume, not a
``subPath``, so edits to the Secret reach the running pod) at ``/etc/sdxlpool/api-keys/keys.yaml``
and passed as ``--api-keys``; the gateway re-reads the file when it changes. The operator never
reads the Secret: only the kubelet does, so the operator needs no permission on Secrets.
"""

from __future__ import annotations

from typing import Any

from sdxlpool.api import labels as lbl
from sdxlpool.api.pool_config import gateway_args
from sdxlpool.api.ports import GATEWAY_PEER_PORT, GATEWAY_PORT, HEALTH_PATH, READY_PATH
from sdxlpool.api.spec import SDXLPoolSpec
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

__all__ = [
    "API_KEYS_PATH",
    "gateway_container_args",
    "gateway_deployment",
    "gateway_role",
    "gateway_role_binding",
    "gateway_service_account",
]

_RBAC = "rbac.authorization.k8s.io"
_API_KEYS_VOLUME = "api-keys"
_API_KEYS_DIR = "/etc/sdxlpool/api-keys"
API_KEYS_PATH = f"{_API_KEYS_DIR}/keys.yaml"
"""Where the gateway reads its API keys file when ``gateway.apiKeysSecret`` is set."""


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


def gateway_container_args(pool: str, namespace: str, spec: SDXLPoolSpec) -> list[str]:
    """Arguments after ``sdxlpool``: the ``gateway`` in Kubernetes discovery mode, with the pool's
    flags, sharing dispatches with its other replicas."""
    keys = API_KEYS_PATH if spec.gateway.api_keys_secret is not None else None
    return [*gateway_args(spec, discovery=["--kubernetes", "--namespace", namespace, "--pool", pool],
                          host="0.0.0.0", port=GATEWAY_PORT, api_keys=keys),
            "--peer-port", str(GATEWAY_PEER_PORT)]


def gateway_deployment(pool: str, namespace: str, name: str, spec: SDXLPoolSpec) -> dict[str, Any]:
    """The gateway Deployment; it runs as the ServiceAccount ``name``."""
    gateway = spec.gateway
    keys = gateway.api_keys_secret
    mounts = [scratch_mount()]
    volumes = [scratch_volume()]
    if keys is not None:
        mounts.append({"name": _API_KEYS_VOLUME, "mountPath": _API_KEYS_DIR, "readOnly": True})
        # 0440: readable by the pod's group (fsGroup 10001), by no one else.
        volumes.append({"name": _API_KEYS_VOLUME, "secret": {
            "secretName": keys.name, "items": [{"key": keys.key, "path": "keys.yaml"}], "defaultMode": 0o440}})
    container = {
        "name": "gateway",
        "image": gateway.image or spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["sdxlpool"],
        "args": gateway_container_args(pool, namespace, spec),
        # POD_IP: peer discovery leaves this replica out (settings.pod_ip).
        "env": [*scratch_env(), {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                             "fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"},
                  {"name": "peers", "containerPort": GATEWAY_PEER_PORT, "protocol": "UDP"}],
        "resources": resource_amounts(gateway.resources),
        "volumeMounts": mounts,
        "readinessProbe": http_probe(READY_PATH, period=5, failures=3),
        "livenessProbe": http_probe(HEALTH_PATH, period=10, failures=3),
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
    pod["volumes"] = volumes
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
