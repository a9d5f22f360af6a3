"""Pod-template pieces every child shares: security contexts, probes, scratch space, resources.

Every pod meets the Kubernetes "restricted" Pod Security Standard: non-root (uid/gid 10001),
no privilege escalation, all capabilities dropped, the runtime's default seccomp profile, a
read-only root filesystem with an ``emptyDir`` at ``/tmp`` (``HOME`` points there, so Python and
Hugging Face caches have somewhere to write), and only ``emptyDir``, ``persistentVolumeClaim``,
``projected`` (service-account token) and ``secret`` (the gateway's API keys) volumes.
"""

from __future__ import annotations

from typing import Any

from sdxlpool.api.spec import Resources, SDXLPoolSpec, SecretKeyRef

__all__ = [
    "RUN_AS",
    "TMP_DIR",
    "container_security_context",
    "hf_download_env",
    "http_probe",
    "pod_security_context",
    "resource_amounts",
    "scratch_env",
    "scratch_mount",
    "scratch_volume",
    "image_pull_secrets",
]

RUN_AS = 10001
TMP_DIR = "/tmp"
_SCRATCH = "tmp"


def pod_security_context() -> dict[str, Any]:
    """Non-root uid/gid 10001; volumes group-owned by it (chowned only when the root differs)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "fsGroup": RUN_AS,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """The restricted profile, repeated per container so each one passes on its own."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def http_probe(path: str, *, period: int, failures: int, timeout: int = 5) -> dict[str, Any]:
    """An HTTP GET probe on the container's ``http`` port."""
    return {
        "httpGet": {"path": path, "port": "http", "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def scratch_volume() -> dict[str, Any]:
    return {"name": _SCRATCH, "emptyDir": {}}


def scratch_mount() -> dict[str, Any]:
    return {"name": _SCRATCH, "mountPath": TMP_DIR}


def scratch_env() -> list[dict[str, str]]:
    """``HOME`` and ``XDG_CACHE_HOME`` on the writable ``/tmp``: the root filesystem is read-only."""
    return [{"name": "HOME", "value": TMP_DIR}, {"name": "XDG_CACHE_HOME", "value": f"{TMP_DIR}/.cache"}]


def hf_download_env(token_secret: SecretKeyRef | None) -> list[dict[str, Any]]:
    """An ``hf download`` container's environment: caches on /tmp, no telemetry, the token if any."""
    env: list[dict[str, Any]] = [
        *scratch_env(),
        {"name": "HF_HOME", "value": f"{TMP_DIR}/huggingface"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    if token_secret is not None:
        ref = {"name": token_secret.name, "key": token_secret.key}
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return env


def resource_amounts(resources: Resources) -> dict[str, dict[str, str]]:
    """``requests``/``limits`` maps from the spec (only the amounts it sets)."""
    result: dict[str, dict[str, str]] = {}
    for kind in ("requests", "limits"):
        amounts = getattr(resources, kind).model_dump(by_alias=True, exclude_none=True)
        if amounts:
            result[kind] = amounts
    return result


def image_pull_secrets(spec: SDXLPoolSpec) -> list[dict[str, str]]:
    return [{"name": secret.name} for secret in spec.image_pull_secrets]
