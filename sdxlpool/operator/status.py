"""Pure: the SDXLPool status the operator reports, from what it wanted and what it sees.

Conditions follow Kubernetes conventions (type, status "True"/"False", reason, message,
lastTransitionTime, observedGeneration); lastTransitionTime moves only when a condition's status
flips, so re-reporting the same state writes nothing.

    Ready        every GPU model (and the gateway, when enabled) has all its replicas ready
    Progressing  a rollout is under way: replicas are being created, updated or started
    Degraded     something needs a human: an invalid spec, no node for a GPU model, a failed rollout,
                 a change the API server refuses for good (invalid object, forbidden)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["EntryObservation", "observe_deployment", "pool_status", "invalid_spec_status", "rejected_status"]


@dataclass(frozen=True)
class EntryObservation:
    """One GPU model's Deployment as the operator sees it."""

    model: str
    slug: str
    desired: int
    ready: int
    available: int
    updated: int
    matched_nodes: tuple[str, ...]
    placement_message: str
    no_matching_nodes: bool
    rolled_out: bool  # the Deployment controller has seen the newest spec
    failure: str | None  # ProgressDeadlineExceeded / ReplicaFailure message

    @property
    def is_ready(self) -> bool:
        return self.ready >= self.desired and self.rolled_out and self.updated >= self.desired

    def as_status(self) -> dict[str, Any]:
        if self.failure:
            message = self.failure
        elif self.no_matching_nodes:
            message = self.placement_message
        else:
            message = f"{self.ready}/{self.desired} ready" + ("" if self.is_ready else ", rolling out")
        return {"model": self.model, "slug": self.slug, "desired": self.desired, "ready": self.ready,
                "available": self.available, "matchedNodes": list(self.matched_nodes), "message": message}


def observe_deployment(deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The numbers status needs from a Deployment (None: not created yet)."""
    if deployment is None:
        return {"ready": 0, "available": 0, "updated": 0, "rolled_out": False, "failure": None}
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation", 0)
    failure = None
    for condition in status.get("conditions") or []:
        failed_progress = condition.get("type") == "Progressing" and condition.get("reason") == "ProgressDeadlineExceeded"
        failed_pods = condition.get("type") == "ReplicaFailure" and condition.get("status") == "True"
        if failed_progress or failed_pods:
            failure = condition.get("message") or condition.get("reason")
    return {
        "ready": int(status.get("readyReplicas") or 0),
        "available": int(status.get("availableReplicas") or 0),
        "updated": int(status.get("updatedReplicas") or 0),
        "rolled_out": int(status.get("observedGeneration") or 0) >= int(generation or 0),
        "failure": failure,
    }


def pool_status(
    *,
    generation: int,
    entries: Sequence[EntryObservation],
    gateway: EntryObservation | None,
    previous: Mapping[str, Any] | None,
    now: str,
    gateway_url: str | None = None,
) -> dict[str, Any]:
    parts = [*entries, *([gateway] if gateway else [])]
    failed = [e for e in parts if e.failure]
    unplaced = [e for e in entries if e.no_matching_nodes and e.desired > 0]
    waiting = [e for e in parts if not e.is_ready]

    if failed:
        degraded = ("True", "RolloutFailed", "; ".join(f"{e.model}: {e.failure}" for e in failed))
    elif unplaced:
        degraded = ("True", "NoMatchingNodes", "; ".join(e.placement_message for e in unplaced))
    else:
        degraded = ("False", "AsExpected", "")
    if not waiting:
        ready = ("True", "AllReplicasReady", f"{_ready_total(parts)} replicas ready")
    else:
        ready = ("False", "ReplicasNotReady", ", ".join(f"{e.model} {e.ready}/{e.desired}" for e in waiting))
    blocked = bool(failed) or (bool(waiting) and all(e in unplaced for e in waiting))
    if waiting and not blocked:
        progressing = ("True", "RollingOut", f"waiting for {', '.join(e.model for e in waiting)}")
    else:
        progressing = ("False", "Blocked" if waiting else "Complete", "")

    conditions = [
        _condition("Ready", *ready, generation, previous, now),
        _condition("Progressing", *progressing, generation, previous, now),
        _condition("Degraded", *degraded, generation, previous, now),
    ]
    desired_total = sum(e.desired for e in entries)
    return {
        "observedGeneration": generation,
        "summary": f"{sum(min(e.ready, e.desired) for e in entries)}/{desired_total}",
        "gpuModels": ",".join(e.model for e in entries),
        "conditions": conditions,
        "gpus": [e.as_status() for e in entries],
        **({"gateway": gateway.as_status()} if gateway else {}),
        **({"gatewayURL": gateway_url} if gateway_url else {}),
    }


def invalid_spec_status(*, generation: int, problems: Sequence[str], previous: Mapping[str, Any] | None,
                        now: str) -> dict[str, Any]:
    """An SDXLPool whose spec does not validate: Degraded, naming every bad field; children untouched."""
    message = "; ".join(problems)
    return {
        "observedGeneration": generation,
        "summary": "invalid",
        "conditions": [
            _condition("Ready", "False", "InvalidSpec", message, generation, previous, now),
            _condition("Progressing", "False", "InvalidSpec", "", generation, previous, now),
            _condition("Degraded", "True", "InvalidSpec", message, generation, previous, now),
        ],
    }


def rejected_status(*, generation: int, message: str, previous: Mapping[str, Any] | None,
                    now: str) -> dict[str, Any]:
    """The API server refused a change for good (an invalid child, forbidden): Degraded with its reason.
    What was reported of the pool's replicas stays; only Degraded says why it cannot go on."""
    kept = [c for c in (previous or {}).get("conditions") or [] if c.get("type") != "Degraded"]
    return {
        **(previous or {}),
        "observedGeneration": generation,
        "conditions": [*kept, _condition("Degraded", "True", "Rejected", message, generation, previous, now)],
    }


def _ready_total(parts: Sequence[EntryObservation]) -> int:
    return sum(min(e.ready, e.desired) for e in parts)


def _condition(kind: str, status: str, reason: str, message: str, generation: int,
               previous: Mapping[str, Any] | None, now: str) -> dict[str, Any]:
    before = next((c for c in (previous or {}).get("conditions") or [] if c.get("type") == kind), None)
    since = now  # a new condition, or one whose status changes, moves now
    if before is not None and before.get("status") == status:
        since = before.get("lastTransitionTime", now)
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
