"""One worker Deployment per GPU entry: ``sdxlpool worker`` on ``gpusPerReplica`` NVIDIA GPUs.

Pure. What a worker pod gets, in the order the manifest lists it:

1. labels (pool, component ``worker``, GPU slug) and annotations (GPU model, provider, location,
   price for the gateway; Prometheus scrape hints);
2. placement: the node affinity from :mod:`.placement`, the entry's ``nodeSelector``, and a
   toleration of the ``nvidia.com/gpu`` taint GPU nodes commonly carry, plus the entry's own;
3. weights: a ``volume`` source's PVC mounted read-only at ``/models``; a ``huggingFace`` source's
   cache volume, filled by init containers running ``hf download`` (huggingface_hub >= 1.0 in the
   worker image), token from the Secret as ``HF_TOKEN``, then mounted read-only by the worker;
4. fine-tunes (``spec.loras``, ``.embeddings``, ``.vaes``, ``.styles``): their folders made of mounts
   and ``hf download`` init containers (:mod:`.fine_tunes`), named by ``--lora-dir`` and the like;
4b. compiled kernels (``spec.compileCache``): its PVC or emptyDir mounted at ``/cache/compile`` and
   named by ``--compile-cache-dir``, so a restarted worker loads them instead of compiling again;
5. the container: ``sdxlpool worker --model ... --gpu-model <entry model> ...`` with the pool's
   defaults and limits as flags (:func:`sdxlpool.api.pool_config.pod_worker_args`, shared with the
   Akash export and ``sdxlpool up``), ``nvidia.com/gpu`` limit, probes, restricted security.

Rollouts use ``maxSurge: 0``: a surge pod would need a spare GPU, which a GPU pool rarely has, so
the rollout would hang; instead one pod at a time is replaced. ``progressDeadlineSeconds`` is an
hour because a first start downloads and loads many GB of weights.
"""

from __future__ import annotations

from typing import Any

from sdxlpool.api import labels as lbl
from sdxlpool.api.pool_config import (
    MODELS_DIR,
    WORKER_STOP_GRACE_SECONDS,
    hf_download_command,
    pod_worker_args,
)
from sdxlpool.api.ports import HEALTH_PATH, READY_PATH, WORKER_PORT
from sdxlpool.api.spec import GpuEntry, HuggingFaceModelSource, SDXLPoolSpec
from sdxlpool.operator.desired.fine_tunes import fine_tune_downloads, fine_tune_mounts, fine_tune_volumes
from sdxlpool.operator.desired.placement import EntryPlacement
from sdxlpool.operator.desired.pods import (
    TMP_DIR,
    container_security_context,
    hf_download_env,
    http_probe,
    image_pull_secrets,
    pod_security_context,
    resource_amounts,
    scratch_env,
    scratch_mount,
    scratch_volume,
)

__all__ = [
    "GPU_TAINT_TOLERATION",
    "STARTUP_SECONDS",
    "worker_deployment",
]

GPU_TAINT_TOLERATION = {"key": lbl.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
STARTUP_SECONDS = 30 * 60
"""How long the startup probe lets a worker load its model before liveness checks begin."""
_STARTUP_PERIOD = 10
_MODELS_VOLUME = "models"
_COMPILE_CACHE_VOLUME = "compile-cache"
COMPILE_CACHE_DIR = "/cache/compile"  # spec.compileCache, mounted read-write: the worker writes kernels there


def _worker_env() -> list[dict[str, Any]]:
    """The container's surroundings only: what the worker serves is in its flags (pool_config)."""
    return [
        *scratch_env(),
        {"name": "SDXLPOOL_CACHE", "value": f"{TMP_DIR}/sdxlpool"},
        {"name": "HF_HUB_OFFLINE", "value": "1"},
    ]


def _compile_cache_volume(spec: SDXLPoolSpec) -> dict[str, Any] | None:
    cache = spec.compile_cache
    if cache is None:
        return None
    if cache.claim_name is not None:
        return {"name": _COMPILE_CACHE_VOLUME, "persistentVolumeClaim": {"claimName": cache.claim_name}}
    size = cache.empty_dir.size_limit if cache.empty_dir is not None else None
    return {"name": _COMPILE_CACHE_VOLUME, "emptyDir": {"sizeLimit": size} if size else {}}


def _model_volume(spec: SDXLPoolSpec) -> dict[str, Any]:
    volume, hub = spec.model.volume, spec.model.hugging_face
    if volume is not None:
        return {"name": _MODELS_VOLUME, "persistentVolumeClaim": {"claimName": volume.claim_name, "readOnly": True}}
    assert hub is not None
    if hub.cache.claim_name is not None:
        return {"name": _MODELS_VOLUME, "persistentVolumeClaim": {"claimName": hub.cache.claim_name}}
    size = hub.cache.empty_dir.size_limit if hub.cache.empty_dir is not None else None
    return {"name": _MODELS_VOLUME, "emptyDir": {"sizeLimit": size} if size else {}}


def _download_containers(spec: SDXLPoolSpec, hub: HuggingFaceModelSource) -> list[dict[str, Any]]:
    """One init container per repo: ``hf download REPO --local-dir DIR`` (resumes; no-op when complete)."""
    env = hf_download_env(hub.token_secret)
    containers = []
    for role, repo in (("base", hub.repo), ("refiner", hub.refiner_repo)):
        if repo is None:
            continue
        command = hf_download_command(repo, hub.revision)
        containers.append(
            {
                "name": f"download-{role}",
                "image": spec.image,
                "imagePullPolicy": spec.image_pull_policy,
                "command": command,
                "env": env,
                "volumeMounts": [{"name": _MODELS_VOLUME, "mountPath": MODELS_DIR}, scratch_mount()],
                "securityContext": container_security_context(),
            }
        )
    return containers


def _tolerations(entry: GpuEntry) -> list[dict[str, Any]]:
    tolerations = [dict(GPU_TAINT_TOLERATION)]
    for toleration in entry.tolerations:
        dumped = toleration.model_dump(by_alias=True, exclude_none=True)
        if dumped not in tolerations:
            tolerations.append(dumped)
    return tolerations


def _pod_annotations(entry: GpuEntry) -> dict[str, str]:
    provider = entry.provider
    price = entry.price_per_hour
    return {
        lbl.ANNOTATION_GPU_MODEL: entry.model,
        lbl.ANNOTATION_PROVIDER: provider.name if provider else "",
        lbl.ANNOTATION_LOCATION: (provider.location or "") if provider else "",
        lbl.ANNOTATION_PRICE: "" if price is None else f"{price:g}",
        **lbl.scrape_annotations(WORKER_PORT),
    }


def worker_deployment(
    pool: str, namespace: str, spec: SDXLPoolSpec, entry: GpuEntry, placement: EntryPlacement,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The worker Deployment of ``entry`` (named ``placement.deployment``), with ``replicas`` workers
    (the autoscaler's choice) or else the entry's own."""
    resources = resource_amounts(entry.resources)
    resources.setdefault("limits", {})[lbl.GPU_RESOURCE] = str(entry.gpus_per_replica)
    mount = {"name": _MODELS_VOLUME, "mountPath": MODELS_DIR, "readOnly": True}
    worker = {
        "name": "worker",
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["sdxlpool"],
        "args": pod_worker_args(spec, entry, port=WORKER_PORT),
        "env": _worker_env(),
        "ports": [{"name": "http", "containerPort": WORKER_PORT, "protocol": "TCP"}],
        "resources": resources,
        "volumeMounts": [mount, *fine_tune_mounts(spec), scratch_mount()],
        # Startup waits for the model to load (/readyz); liveness starts only after it succeeds.
        "startupProbe": http_probe(READY_PATH, period=_STARTUP_PERIOD, failures=STARTUP_SECONDS // _STARTUP_PERIOD),
        "readinessProbe": http_probe(READY_PATH, period=5, failures=3),
        "livenessProbe": http_probe(HEALTH_PATH, period=20, failures=3, timeout=10),
        "securityContext": container_security_context(),
    }
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # A stopped worker (scale-down, rollout) finishes the jobs it holds first (--drain-seconds).
        "terminationGracePeriodSeconds": WORKER_STOP_GRACE_SECONDS,
        "securityContext": pod_security_context(),
        "affinity": {"nodeAffinity": placement.node_affinity},
        "tolerations": _tolerations(entry),
    }
    if entry.node_selector:
        pod["nodeSelector"] = dict(entry.node_selector)
    if spec.image_pull_secrets:
        pod["imagePullSecrets"] = image_pull_secrets(spec)
    downloads = _download_containers(spec, spec.model.hugging_face) if spec.model.hugging_face is not None else []
    downloads += fine_tune_downloads(spec)
    if downloads:
        pod["initContainers"] = downloads
    pod["containers"] = [worker]
    pod["volumes"] = [_model_volume(spec), *fine_tune_volumes(spec), scratch_volume()]
    if (compile_cache := _compile_cache_volume(spec)) is not None:
        worker["args"] = [*worker["args"], "--compile-cache-dir", COMPILE_CACHE_DIR]
        worker["volumeMounts"] = [*worker["volumeMounts"], {"name": _COMPILE_CACHE_VOLUME, "mountPath": COMPILE_CACHE_DIR}]
        pod["volumes"].append(compile_cache)

    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": placement.deployment,
            "namespace": namespace,
            "labels": lbl.child_labels(pool, "worker", entry.slug),
        },
        "spec": {
            "replicas": entry.replicas if replicas is None else replicas,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 3600,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}},
            "selector": {"matchLabels": lbl.selector(pool, "worker", entry.slug)},
            "template": {
                "metadata": {"labels": lbl.child_labels(pool, "worker", entry.slug), "annotations": _pod_annotations(entry)},
                "spec": pod,
            },
        },
    }
