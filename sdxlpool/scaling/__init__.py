"""Autoscaling: the gateway's demand in, replicas per GPU model out, cheapest price per step first.

Pure decisions, shared by the operator (Deployments' scale subresource), `sdxlpool up` (worker
processes) and `benchmarks/autoscaling.py`, so all three scale the same way:

* `demand`: the gateway's `/v1/demand` report (per class of allowed GPU models, per model).
* `speeds`: seconds per normalised step, measured or estimated from relative GPU speeds.
* `queueing`: the M/M/c p95 that sizes a model for the latency target.
* `policy`: the spec's autoscaling -> `ScalingPolicy`; `recommend` places demand on models.
* `stabiliser`: `Autoscaler`, the up/down delays over recommendations (no flapping).
"""

from sdxlpool.scaling.demand import DemandClass, DemandReport, ModelState, merge_reports
from sdxlpool.scaling.policy import ModelPolicy, Recommendation, ScalingPolicy, policy_from_spec, recommend
from sdxlpool.scaling.queueing import (
    allen_cunneen,
    arrivals_within_target,
    erlang_c,
    predicted_p95,
    servers_for_target,
)
from sdxlpool.scaling.speeds import estimate_seconds_per_step
from sdxlpool.scaling.stabiliser import Autoscaler, ModelDecision, ScalingDecision

__all__ = [
    "Autoscaler",
    "allen_cunneen",
    "arrivals_within_target",
    "DemandClass",
    "DemandReport",
    "ModelDecision",
    "ModelPolicy",
    "ModelState",
    "Recommendation",
    "ScalingDecision",
    "ScalingPolicy",
    "erlang_c",
    "estimate_seconds_per_step",
    "merge_reports",
    "policy_from_spec",
    "predicted_p95",
    "recommend",
    "servers_for_target",
]
