"""Pure drift detection: what patch turns an observed child back into the desired one.

The API server fills in defaults the operator never wrote (strategy, dnsPolicy, clusterIP, ...),
so "equal" would always be false. A child is in shape when the desired manifest is a *subset* of
the observed one: every key the operator sets holds the value it wants. Otherwise the patch carries
the desired value of each top-level field that drifted; as a JSON merge patch, maps merge into what
the server has and lists are replaced whole.

A subset cannot see a field the operator set once and no longer wants: a merge patch removes only
keys it names as null. So the optional pod fields the operator writes on some pods and not others
(:data:`OPTIONAL_POD_FIELDS`: init containers that download weights or fine-tunes, a nodeSelector,
pull secrets) are patched to null when the desired pod template leaves them out; otherwise a pool
whose LoRAs were removed would keep init containers mounting a volume that is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["OPTIONAL_POD_FIELDS", "is_subset", "drift_patch"]

_NEVER_PATCHED = {"apiVersion", "kind", "metadata", "status"}
OPTIONAL_POD_FIELDS = ("initContainers", "nodeSelector", "imagePullSecrets")


def is_subset(desired: Any, observed: Any) -> bool:
    if isinstance(desired, Mapping):
        return isinstance(observed, Mapping) and all(
            key in observed and is_subset(value, observed[key]) for key, value in desired.items()
        )
    if isinstance(desired, list):
        return (isinstance(observed, list) and len(desired) == len(observed)
                and all(is_subset(d, o) for d, o in zip(desired, observed, strict=True)))
    if isinstance(desired, bool) or isinstance(observed, bool):
        return desired is observed
    if isinstance(desired, int | float | str) and isinstance(observed, int | float | str):
        return str(desired) == str(observed)  # the server may render 1 as "1" in quantities
    return desired == observed


def drift_patch(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> dict[str, Any] | None:
    """A merge patch that repairs `observed`, or None when it is already as desired."""
    patch: dict[str, Any] = {}
    want_meta, have_meta = desired.get("metadata", {}), observed.get("metadata", {})
    meta_patch = {
        key: want_meta[key]
        for key in ("labels", "annotations", "ownerReferences")
        if key in want_meta and not is_subset(want_meta[key], have_meta.get(key, {} if key != "ownerReferences" else []))
    }
    if meta_patch:
        patch["metadata"] = meta_patch
    for key, value in desired.items():
        if key not in _NEVER_PATCHED and not is_subset(value, observed.get(key)):
            patch[key] = value
    stale = _stale_pod_fields(desired, observed)
    if stale:
        spec = dict(patch.get("spec", desired["spec"]))
        template = dict(spec["template"])
        template["spec"] = {**template["spec"], **dict.fromkeys(stale)}
        patch["spec"] = {**spec, "template": template}
    return patch or None


def _stale_pod_fields(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[str]:
    """The optional pod fields `observed`'s template has and `desired`'s leaves out (Deployments)."""
    want = desired.get("spec", {}).get("template", {}).get("spec")
    have = (observed.get("spec") or {}).get("template", {}).get("spec") or {}
    if not isinstance(want, Mapping):
        return []
    return [key for key in OPTIONAL_POD_FIELDS if key not in want and have.get(key)]
