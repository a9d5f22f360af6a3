"""The operator's autoscaler: the gateway's demand in, each GPU model's Deployment scaled.

A thin shell around `sdxlpool.scaling` (the decisions, shared with `sdxlpool up` and the benchmark).
Per pool with `spec.autoscaling.enabled`, on the `pool_autoscale` timer (every
`autoscale_seconds`), `autoscale_step`:

1. reads the demand: one `GET /v1/demand` per ready gateway pod of the pool
   (`http://podIP:GATEWAY_PORT`), summed with `merge_reports` (each replica saw its share of the
   requests); the `demand_url` setting replaces the pod lookup (a gateway outside the cluster, tests);
2. steps the pool's `Autoscaler` (kept in the pool's `PoolState`, rebuilt when the spec's policy
   changes) with the replicas the Deployments have now;
3. writes each change through the Deployment's scale subresource, as `kubectl scale` and the
   HorizontalPodAutoscaler do (`KubeClient.scale`);
4. hands back what the reconcile needs: the replicas to run per GPU model (so drift repair keeps
   them, rather than the spec's starting size) and `status.autoscaling`.

Demand that cannot be read is no failure of the pool: it keeps its size and `status.autoscaling`
says why in `message` (not Degraded). After an operator restart, until its first step, the
replicas to run are those `status.autoscaling` reports (`replicas_to_run`).

The pure parts (`replicas_to_run`, `scale_actions`, `autoscaling_status`, `unread_status`) are
tested on their own; the rest is I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sdxlpool.api import labels as lbl
from sdxlpool.api.ports import DEMAND_PATH, GATEWAY_PORT
from sdxlpool.api.spec import SDXLPool, SDXLPoolSpec
from sdxlpool.errors import UpstreamError
from sdxlpool.operator.desired.names import child_name
from sdxlpool.scaling import Autoscaler, DemandReport, ScalingDecision, merge_reports

if TYPE_CHECKING:
    from sdxlpool._kube import KubeClient

__all__ = [
    "AutoscaleResult",
    "Autoscaled",
    "ScaleAction",
    "autoscale_step",
    "autoscaled_slugs",
    "autoscaling_status",
    "demand_urls",
    "read_demand",
    "replicas_to_run",
    "scale_actions",
    "unread_status",
]


@dataclass(frozen=True)
class Autoscaled:
    """What the autoscaler decided for one pool, kept in its `PoolState` for the reconcile."""

    replicas: Mapping[str, int]  # GPU slug -> workers to run (autoscaled entries only)
    status: dict[str, Any]  # status.autoscaling


@dataclass(frozen=True)
class ScaleAction:
    gpu: str  # slug
    model: str  # as the spec writes it
    deployment: str
    current: int
    desired: int
    reason: str

    @property
    def message(self) -> str:
        """The Event's message: `a100: 1 -> 3: <reason>`."""
        return f"{self.gpu}: {self.current} -> {self.desired}: {self.reason}"


@dataclass
class AutoscaleResult:
    autoscaled: Autoscaled
    scaled: list[ScaleAction] = field(default_factory=list)
    error: Exception | None = None  # a scale the API server refused, after `scaled` went through


# -- pure ------------------------------------------------------------------------------------------

def autoscaled_slugs(spec: SDXLPoolSpec) -> dict[str, tuple[int, int]]:
    """GPU slug -> (minReplicas, maxReplicas) of the entries the autoscaler sizes (none when off)."""
    if not spec.autoscaling.enabled:
        return {}
    return {entry.slug: (entry.autoscaling.min_replicas, entry.autoscaling.max_replicas)
            for entry in spec.gpus if entry.autoscaling is not None}


def replicas_to_run(spec: SDXLPoolSpec, remembered: Mapping[str, int] | None,
                    reported: Mapping[str, Any] | None) -> dict[str, int]:
    """Per autoscaled entry, the workers the reconcile renders: what this operator's autoscaler
    last decided, else what `status.autoscaling` reports (a restarted operator), else the spec's
    starting `replicas`; always within the entry's bounds (they may have changed)."""
    told = {g.get("slug"): g.get("desiredReplicas") for g in (reported or {}).get("gpus") or []
            if isinstance(g, Mapping)}
    by_slug = {entry.slug: entry for entry in spec.gpus}
    replicas = {}
    for slug, (least, most) in autoscaled_slugs(spec).items():
        value = (remembered or {}).get(slug)
        if value is None:
            value = told.get(slug)
        if not isinstance(value, int) or isinstance(value, bool):
            value = by_slug[slug].replicas
        replicas[slug] = min(max(value, least), most)
    return replicas


def scale_actions(spec: SDXLPoolSpec, pool: str, decision: ScalingDecision,
                  current: Mapping[str, int]) -> list[ScaleAction]:
    """The scale writes `decision` asks for: each autoscaled model whose Deployment exists
    (`current` has it) and should have another number of replicas."""
    sized = autoscaled_slugs(spec)
    models = {entry.slug: entry.model for entry in spec.gpus}
    return [ScaleAction(gpu=m.gpu, model=models[m.gpu], deployment=child_name(pool, m.gpu), current=current[m.gpu],
                        desired=m.desired, reason=m.reason)
            for m in decision.models if m.gpu in sized and m.gpu in current and m.desired != current[m.gpu]]


def autoscaling_status(spec: SDXLPoolSpec, decision: ScalingDecision, *, previous: Mapping[str, Any] | None,
                       now: str, scaled: bool) -> dict[str, Any]:
    """`status.autoscaling` after a step that read the demand at `now` (and scaled, or not)."""
    models = {entry.slug: entry.model for entry in spec.gpus}
    gpus = []
    for m in decision.models:
        gpu: dict[str, Any] = {"model": models.get(m.gpu, m.gpu), "slug": m.gpu, "desiredReplicas": m.desired,
                               "recommendedReplicas": m.recommended, "reason": m.reason}
        if m.predicted_p95 is not None and m.predicted_p95 != float("inf"):
            gpu["predictedP95Seconds"] = round(m.predicted_p95, 3)
        gpus.append(gpu)
    status: dict[str, Any] = {"demandReadAt": now, "message": "", "gpus": gpus}
    last_scale = now if scaled else (previous or {}).get("lastScaleTime")
    if last_scale:
        status["lastScaleTime"] = last_scale
    return status


def unread_status(spec: SDXLPoolSpec, replicas: Mapping[str, int], *, previous: Mapping[str, Any] | None,
                  message: str) -> dict[str, Any]:
    """`status.autoscaling` when the demand could not be read: the pool keeps its size, and says why."""
    status = dict(previous or {})
    status["message"] = message
    if not status.get("gpus"):
        models = {entry.slug: entry.model for entry in spec.gpus}
        status["gpus"] = [{"model": models[slug], "slug": slug, "desiredReplicas": count, "recommendedReplicas": count,
                           "reason": "demand not read yet"} for slug, count in replicas.items()]
    return status


# -- I/O -------------------------------------------------------------------------------------------

def demand_urls(kube: KubeClient, namespace: str, pool: str, demand_url: str | None) -> list[str]:
    """Where to read the pool's demand: `demand_url` (a template with {namespace} and {name}) when
    set, else each ready gateway pod of the pool. Labels are filtered here: not every server does."""
    if demand_url:
        return [demand_url.format(namespace=namespace, name=pool)]
    urls = []
    for pod in kube.list("v1", "Pod", namespace):
        labels = pod.get("metadata", {}).get("labels") or {}
        if labels.get(lbl.POOL) != pool or labels.get(lbl.COMPONENT) != "gateway":
            continue
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("podIP") and not pod.get("metadata", {}).get("deletionTimestamp"):
            urls.append(f"http://{status['podIP']}:{GATEWAY_PORT}{DEMAND_PATH}")
    return sorted(urls)


def read_demand(urls: Sequence[str], timeout: float) -> tuple[DemandReport, list[str]]:
    """Every replica's report, merged; and what went wrong with those that did not answer. Raises
    UpstreamError when none answered (none to ask, or all failed)."""
    import httpx

    if not urls:
        raise UpstreamError("no ready gateway pod to read the demand from")
    reports, problems = [], []
    with httpx.Client(timeout=timeout) as client:
        for url in urls:
            try:
                answer = client.get(url)
                answer.raise_for_status()
                reports.append(DemandReport.model_validate(answer.json()))
            except (httpx.HTTPError, ValueError) as exc:
                problems.append(f"{url}: {exc}")
    if not reports:
        raise UpstreamError("; ".join(problems))
    return merge_reports(reports), problems


def autoscale_step(kube: KubeClient, pool: SDXLPool, autoscaler: Autoscaler,
                   deployments: Mapping[str, Mapping[str, Any]], *, remembered: Mapping[str, int] | None,
                   previous: Mapping[str, Any] | None, demand_url: str | None, timeout: float, now: float,
                   stamp: str) -> AutoscaleResult:
    """One step for one pool (blocking: run it in a thread). `deployments`: the pool's Deployments
    by name (the operator's index); `remembered`: the replicas the last step left; `previous`: the
    last `status.autoscaling`; `now`: the autoscaler's clock (monotonic); `stamp`: the time to report."""
    name = str(pool.metadata["name"])
    namespace = str(pool.metadata.get("namespace") or "default")
    spec = pool.spec
    current = {}
    for entry in spec.gpus:
        deployment = deployments.get(child_name(name, entry.slug))
        if deployment is not None:
            current[entry.slug] = int((deployment.get("spec") or {}).get("replicas", 1))
    running = replicas_to_run(spec, remembered, previous)
    try:
        demand, problems = read_demand(demand_urls(kube, namespace, name, demand_url), timeout)
    except Exception as exc:  # noqa: BLE001 - none answered, or the pod list refused: the pool keeps its size
        message = f"demand not read, keeping the pool's size: {exc}"
        return AutoscaleResult(Autoscaled(running, unread_status(spec, running, previous=previous, message=message)))
    decision = autoscaler.step(demand, current, now)
    running.update({slug: count for slug, count in current.items() if slug in running})  # what runs now
    result = AutoscaleResult(Autoscaled(running, {}))
    for action in scale_actions(spec, name, decision, current):
        try:
            kube.scale("apps/v1", "Deployment", action.deployment, namespace, action.desired)
        except Exception as exc:  # noqa: BLE001 - KubeError mostly; what went through is kept
            result.error = exc
            break
        running[action.gpu] = action.desired
        result.scaled.append(action)
    status = autoscaling_status(spec, decision, previous=previous, now=stamp, scaled=bool(result.scaled))
    if problems:
        status["message"] = "some gateway replicas did not answer: " + "; ".join(problems)
    if result.error is not None:
        status["message"] = f"scaling refused: {result.error}"
    result.autoscaled = Autoscaled(running, status)
    return result
