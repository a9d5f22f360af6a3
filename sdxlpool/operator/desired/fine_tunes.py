"""A worker pod's fine-tune folders (``spec.loras``, ``.embeddings``, ``.vaes``, ``.styles``): pure.

Each kind the spec lists gets one folder, the one its worker flag names
(:func:`sdxlpool.api.pool_config.fine_tune_dir`, e.g. ``--lora-dir /fine-tunes/loras``), made of
mounts only, so nothing is copied and no mount is nested inside a read-only one::

    /fine-tunes/loras/huggingface        the pod's ``fine-tunes`` emptyDir (subPath ``loras``):
                                         init containers ``download-loras-<i>`` run
                                         ``hf download REPO FILE --local-dir ...`` into it; the
                                         worker mounts it read-only
    /fine-tunes/loras/volume/<claim>/<path>
                                         the file (or folder) ``path`` of the PVC ``claim``, read-only
                                         (subPath ``path``; the PVC is the model's ``models`` volume
                                         when it is the same claim)

``--styles`` names the one styles.csv inside ``/fine-tunes/styles``, placed the same way.
A worker scans its folders recursively and names a file after its stem, as A1111 does, so
``<lora:pixel-art-xl:0.8>`` finds ``.../huggingface/main/nerijs/pixel-art-xl/pixel-art-xl.safetensors``.
"""

from __future__ import annotations

import posixpath
from typing import Any

from sdxlpool.api.pool_config import (
    FINE_TUNE_KINDS,
    FINE_TUNES_DIR,
    FineTuneKind,
    fine_tune_dir,
    hf_file_download_command,
    volume_claim,
    volume_file_path,
)
from sdxlpool.api.spec import FineTuneSource, SDXLPoolSpec
from sdxlpool.operator.desired.pods import container_security_context, hf_download_env, scratch_mount

__all__ = ["DOWNLOADS_VOLUME", "fine_tune_downloads", "fine_tune_mounts", "fine_tune_volumes"]

DOWNLOADS_VOLUME = "fine-tunes"
_MODELS_VOLUME = "models"  # workers.py's volume of the model (a PVC when spec.model is a volume)


def _sources(spec: SDXLPoolSpec) -> list[tuple[FineTuneKind, int, FineTuneSource]]:
    return [(kind, index, source) for kind in FINE_TUNE_KINDS for index, source in enumerate(spec.fine_tunes(kind.field))]


def _claim_volumes(spec: SDXLPoolSpec) -> dict[str, str]:
    """PVC claim -> pod volume name, in the order the spec first names each claim."""
    names: dict[str, str] = {}
    model_claim = spec.model.volume.claim_name if spec.model.volume is not None else None
    for _, _, source in _sources(spec):
        if source.volume is None:
            continue
        claim = volume_claim(spec, source)
        if claim not in names:
            names[claim] = _MODELS_VOLUME if claim == model_claim else f"fine-tunes-{len(names)}"
    return names


def _download_kinds(spec: SDXLPoolSpec) -> list[FineTuneKind]:
    return [kind for kind in FINE_TUNE_KINDS if any(s.hugging_face for s in spec.fine_tunes(kind.field))]


def fine_tune_volumes(spec: SDXLPoolSpec) -> list[dict[str, Any]]:
    """The pod volumes the fine-tunes need besides ``models``: the downloads' emptyDir, other PVCs."""
    volumes: list[dict[str, Any]] = []
    if _download_kinds(spec):
        volumes.append({"name": DOWNLOADS_VOLUME, "emptyDir": {}})
    for claim, name in _claim_volumes(spec).items():
        if name != _MODELS_VOLUME:
            volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
    return volumes


def _download_mount(kind: FineTuneKind, *, read_only: bool) -> dict[str, Any]:
    mount: dict[str, Any] = {"name": DOWNLOADS_VOLUME, "mountPath": posixpath.join(fine_tune_dir(kind), "huggingface"),
                             "subPath": kind.folder}
    if read_only:
        mount["readOnly"] = True
    return mount


def fine_tune_mounts(spec: SDXLPoolSpec) -> list[dict[str, Any]]:
    """The worker container's mounts that make up its fine-tune folders (all read-only)."""
    mounts = [_download_mount(kind, read_only=True) for kind in _download_kinds(spec)]
    claims = _claim_volumes(spec)
    for kind, _, source in _sources(spec):
        if source.volume is None:
            continue
        mount: dict[str, Any] = {"name": claims[volume_claim(spec, source)],
                                 "mountPath": volume_file_path(spec, kind, source, FINE_TUNES_DIR), "readOnly": True}
        sub_path = posixpath.normpath("/" + source.volume.path).lstrip("/")
        if sub_path:
            mount["subPath"] = sub_path
        mounts.append(mount)
    return mounts


def fine_tune_downloads(spec: SDXLPoolSpec) -> list[dict[str, Any]]:
    """One init container per Hugging Face file: ``hf download REPO FILE --local-dir ...``."""
    containers = []
    for kind, index, source in _sources(spec):
        hub = source.hugging_face
        if hub is None:
            continue
        containers.append(
            {
                "name": f"download-{kind.folder}-{index}",
                "image": spec.image,
                "imagePullPolicy": spec.image_pull_policy,
                "command": hf_file_download_command(kind, source),
                "env": hf_download_env(hub.token_secret),
                "volumeMounts": [_download_mount(kind, read_only=False), scratch_mount()],
                "securityContext": container_security_context(),
            }
        )
    return containers
