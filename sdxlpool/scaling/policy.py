"""Demand -> replicas per GPU model: enough capacity for the latency target at the lowest price.

Pure: a `ScalingPolicy` (from the SDXLPool spec), a `DemandReport` (from the gateway) and the
current replicas in; one `Recommendation` per GPU model out, with its reason. `Autoscaler`
(stabiliser.py) adds time: the delays that keep it from flapping.

The rule, step by step:

1. Speeds: each model's seconds per normalised step, measured or estimated (speeds.py). A model
   that cannot finish an average request within the routing budget (`WITHIN_SHARE` of the
   target) even when idle is *too slow*: it gets load only when a class of requests allows
   nothing faster. The gateway, given the same target, sends a request to the worker cheapest per
   step among those that would finish it within that budget, else to the soonest
   (sdxlpool.gateway.routing's `default_scheduler(latency_target=...)`), so a model slower than
   that would be paid for and left idle. The verdict has hysteresis (`TOO_SLOW_BAND`): given the
   verdicts of the last step, a model changes its verdict only once the average request is 10 %
   past the budget, so a pool whose average request sits at the budget does not flip its plan
   between "the cheap models take it" and "the fast ones do" every window, which the scale-down
   delay would turn into paying for both plans.
2. Load to place, per class (the GPU models its requests allowed): its arrival rate plus the spare
   kept for start-up time (`headroom`), plus its waiting requests spread over the target (so a
   backlog is cleared within it).
3. Placement, most restricted classes first (their choice is narrowest): first onto the capacity
   that is paid for anyway (each model's `minReplicas`), then onto the models with the lowest
   price per normalised step (price per hour x seconds per step; models without a price after the
   priced ones, fastest first), each filled up to what its `maxReplicas` take within the target
   (queueing.py) before the next is used. What even that cannot take (a burst, with the fast
   models at their maximum) goes to the allowed models that are too slow, fastest first, each up
   to `SPILL_BUSY` (80 %) busy at its `maxReplicas`: those requests miss the target, by far less
   than they would waiting in the gateway's queue for a fast model (the gateway sends a request
   that no worker finishes within the budget to the soonest finish). Without this, a 5-6 s target
   on the benchmark's day missed its own target by 2x in bursts (p95 11 s), with the H100s at their
   maximum and the A100s left at their minimum.
4. Replicas: per model, the fewest workers whose M/M/c p95 (queueing.py; with the Allen-Cunneen
   correction when the gateway reports the spread of request sizes) for the load it was given
   stays within the target; clamped to `minReplicas..maxReplicas`. Work already queued on a
   model's workers adds none: it stays with the worker it was sent to, where a new replica cannot
   take it (the movable backlog is the gateway's queue, step 2). An entry without autoscaling
   bounds keeps its replicas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from sdxlpool.api.spec import SDXLPoolSpec
from sdxlpool.scaling.demand import DemandClass, DemandReport
from sdxlpool.scaling.queueing import allen_cunneen, arrivals_within_target, predicted_p95, servers_for_target
from sdxlpool.scaling.speeds import estimate_seconds_per_step

__all__ = ["SPILL_BUSY", "TOO_SLOW_BAND", "WITHIN_SHARE", "ModelPolicy", "Recommendation", "ScalingPolicy", "is_too_slow",
           "policy_from_spec", "recommend"]

# The share of the latency target within which the gateway routes by price (the rest of the
# target is for waiting in the gateway's queue, the estimate's error and bursts while workers
# start); shared with sdxlpool.gateway.routing so that routing and scaling agree on "fast enough".
WITHIN_SHARE = 0.7

# How far past the routing budget the average request must move before a model's "too slow" verdict
# changes (a share of the budget, both ways): the window's mean request size wanders by a few
# percent from one window to the next.
TOO_SLOW_BAND = 0.1

# How busy the too slow models may run with the load the fast-enough ones cannot take (step 3b).
SPILL_BUSY = 0.8

_DEFAULT_REQUEST_STEPS = 25.0  # an average request before any arrived: the pool default's 25 steps
_MAX_SERVERS = 10_000  # search bound for "no maxReplicas" (fixed entries never search)


@dataclass(frozen=True)
class ModelPolicy:
    gpu: str  # canonical slug
    replicas: int  # the spec's replicas: the starting size, and the fixed size without bounds
    min_replicas: int
    max_replicas: int
    price_per_hour: float | None = None
    autoscaled: bool = True

    @property
    def fixed(self) -> bool:
        return not self.autoscaled


@dataclass(frozen=True)
class ScalingPolicy:
    models: tuple[ModelPolicy, ...]
    p95_target: float = 30.0
    scale_up_delay: float = 15.0
    scale_down_delay: float = 300.0
    headroom: float = 0.15  # spare capacity over the measured rate: demand grows while workers start
    within_share: float = WITHIN_SHARE  # too slow: an average request alone takes over this x the target

    def model(self, gpu: str) -> ModelPolicy | None:
        return next((m for m in self.models if m.gpu == gpu), None)


@dataclass(frozen=True)
class Recommendation:
    gpu: str
    replicas: int
    reason: str
    load_steps_per_second: float = 0.0  # the normalised steps per second placed on this model
    predicted_p95: float | None = None  # at `replicas`, for the load placed here
    too_slow: bool = False  # an average request alone is over the routing budget (step 1)


def policy_from_spec(spec: SDXLPoolSpec) -> ScalingPolicy:
    """The autoscaling part of a pool spec (entries without bounds stay at their replicas)."""
    models = []
    for entry in spec.gpus:
        bounds = entry.autoscaling if spec.autoscaling.enabled else None
        models.append(ModelPolicy(
            gpu=entry.slug, replicas=entry.replicas,
            min_replicas=bounds.min_replicas if bounds else entry.replicas,
            max_replicas=bounds.max_replicas if bounds else entry.replicas,
            price_per_hour=entry.price_per_hour, autoscaled=bounds is not None))
    auto = spec.autoscaling
    return ScalingPolicy(models=tuple(models), p95_target=auto.latency_target.p95_seconds,
                         scale_up_delay=auto.scale_up_delay, scale_down_delay=auto.scale_down_delay)


def recommend(policy: ScalingPolicy, demand: DemandReport, *,
              too_slow_before: Mapping[str, bool] | None = None) -> dict[str, Recommendation]:
    """Replicas per GPU model of `policy` for `demand`, each with its reason. `too_slow_before`:
    each model's verdict at the previous step (its `Recommendation.too_slow`), for the hysteresis;
    a model without one is judged by the budget itself."""
    target = policy.p95_target
    request_steps = demand.mean_request_steps or _DEFAULT_REQUEST_STEPS
    measured = {m.gpu: m.seconds_per_step for m in demand.models if m.seconds_per_step}
    speed = {m.gpu: estimate_seconds_per_step(m.gpu, measured) for m in policy.models}
    before = too_slow_before or {}
    too_slow = {gpu for gpu, s in speed.items()
                if is_too_slow(request_steps * s, target * policy.within_share, before.get(gpu))}
    # G/G/c waits: Poisson arrivals, job times spread like the request sizes (one model's speed is
    # constant); without the spread, exponential job times (M/M/c, the cautious default).
    cv2 = demand.request_steps_cv2
    variability = allen_cunneen(cv2) if cv2 is not None else 1.0

    # Steps per second `workers` workers of a model take with the p95 within the target.
    def capacity(model: ModelPolicy, workers: int) -> float:
        seconds = request_steps * speed[model.gpu]
        return arrivals_within_target(workers, seconds, target, variability=variability) * request_steps

    load = {m.gpu: 0.0 for m in policy.models}
    for demand_class in sorted(demand.classes, key=lambda c: (len(c.allowed) or math.inf, c.allowed)):
        rate = demand_class.steps_per_second * (1 + policy.headroom) + demand_class.waiting_steps / target
        candidates = _candidates(policy, demand_class, speed, too_slow)
        # (3) capacity already paid for, then the cheapest per step, each up to its max.
        for bound in (lambda m: m.min_replicas, lambda m: m.max_replicas):
            for model in candidates:
                take = min(rate, max(0.0, capacity(model, bound(model)) - load[model.gpu]))
                load[model.gpu] += take
                rate -= take
        # (3b) what the fast-enough models cannot take at their max: onto the too slow ones.
        for model in _spill_models(policy, demand_class, speed, too_slow, candidates):
            take = min(rate, max(0.0, SPILL_BUSY * model.max_replicas / speed[model.gpu] - load[model.gpu]))
            load[model.gpu] += take
            rate -= take
        if rate > 1e-9 and candidates:  # more than every allowed model at its max can take
            load[candidates[0].gpu] += rate

    recommendations = {}
    for model in policy.models:
        recommendations[model.gpu] = _replicas(policy, model, demand, load[model.gpu], speed[model.gpu],
                                               request_steps, model.gpu in too_slow, variability)
    return recommendations


def is_too_slow(seconds: float, budget: float, before: bool | None = None) -> bool:
    """Whether a model whose average request takes `seconds` alone is too slow for the routing
    `budget`, given its verdict `before` (None: none yet)."""
    if before is None:
        return seconds > budget
    return seconds > budget * (1 - TOO_SLOW_BAND) if before else seconds > budget * (1 + TOO_SLOW_BAND)


def _spill_models(policy: ScalingPolicy, demand_class: DemandClass, speed: Mapping[str, float],
                  too_slow: set[str], candidates: list[ModelPolicy]) -> list[ModelPolicy]:
    """The allowed models that are too slow and not already candidates, fastest first."""
    return sorted((m for m in policy.models
                   if m.gpu in too_slow and m not in candidates
                   and (not demand_class.allowed or m.gpu in demand_class.allowed)),
                  key=lambda m: speed[m.gpu])


def _candidates(policy: ScalingPolicy, demand_class: DemandClass, speed: Mapping[str, float],
                too_slow: set[str]) -> list[ModelPolicy]:
    allowed = [m for m in policy.models if not demand_class.allowed or m.gpu in demand_class.allowed]
    fast_enough = [m for m in allowed if m.gpu not in too_slow]
    if fast_enough:
        def price_per_step(m: ModelPolicy) -> tuple[int, float]:
            if m.price_per_hour is None:
                return (1, speed[m.gpu])
            return (0, m.price_per_hour * speed[m.gpu])
        return sorted(fast_enough, key=price_per_step)
    return sorted(allowed, key=lambda m: speed[m.gpu])  # only slow ones allowed: fastest first


def _replicas(policy: ScalingPolicy, model: ModelPolicy, demand: DemandReport, load: float, seconds_per_step: float,
              request_steps: float, too_slow: bool, variability: float = 1.0) -> Recommendation:
    if model.fixed:
        return Recommendation(model.gpu, model.replicas, "fixed: no autoscaling bounds", load, too_slow=too_slow)
    target = policy.p95_target
    service = request_steps * seconds_per_step
    arrivals = load / request_steps
    # Work already queued on this model's workers is not counted here: it stays with the worker it
    # was sent to, so a new replica would not take any of it. New arrivals are what replicas serve,
    # and the router sends them past a long queue (movable work waits in the gateway's queue and
    # counts through the classes' waiting steps).
    needed = servers_for_target(arrivals, service, target, most=max(model.max_replicas, 1), variability=variability)
    rate = f"{load:.3g} steps/s at {seconds_per_step:.3g} s/step"
    if needed is None:
        wanted = model.max_replicas
        reason = (f"{rate}: one request takes {service:.3g} s, over the {target:g} s target" if too_slow
                  else f"{rate}: even maxReplicas ({model.max_replicas}) miss the {target:g} s p95")
    else:
        wanted = needed
        reason = "no demand" if load <= 0 else f"{rate} needs {wanted} for p95 <= {target:g} s"
    replicas = min(max(wanted, model.min_replicas), model.max_replicas)
    if replicas != wanted:
        reason += f"; held at {'minReplicas' if replicas > wanted else 'maxReplicas'} ({replicas})"
    p95 = predicted_p95(replicas, arrivals, service, variability=variability) if load > 0 else None
    return Recommendation(model.gpu, replicas, reason, load, p95, too_slow)
