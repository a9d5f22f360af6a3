"""Routing: which worker serves a request. Filters, scorers and a picker as small plugins.

Pure: no I/O, no asyncio, no HTTP; the clock comes in as `RouteRequest.now`. The gateway builds a
`Scheduler` once (`default_scheduler(...)` or `scheduler_from_config(...)`) and calls
`schedule(request, states)` per attempt. README.md beside this file gives every plugin's formula
and a config snippet.

    filters/   available, gpu_allowed, not_tried, freshness
    scorers/   completion_time, preference, cost, least_inflight, lora_affinity
    pickers/   best, round_robin, first_free
"""

from __future__ import annotations

from sdxlpool.gateway.routing.estimates import (
    DEFAULT_STEP_SECONDS,
    expected_completion_seconds,
    fallback_step_seconds,
    pool_drain_rate,
)
from sdxlpool.gateway.routing.factory import scheduler_from_config
from sdxlpool.gateway.routing.filters import Available, Freshness, GpuAllowed, NotTried, allowed_rank
from sdxlpool.gateway.routing.pickers import Best, FirstFree, RoundRobin
from sdxlpool.gateway.routing.plugins import Filter, Picker, Scorer
from sdxlpool.gateway.routing.scheduler import DEFAULT_WAIT_WEIGHT, Scheduler, default_scheduler
from sdxlpool.gateway.routing.scorers import CompletionTime, Cost, LeastInflight, LoraAffinity, Preference
from sdxlpool.gateway.routing.types import Candidate, Decision, RouteRequest, Scored

__all__ = [
    "DEFAULT_STEP_SECONDS",
    "DEFAULT_WAIT_WEIGHT",
    "Available",
    "Best",
    "Candidate",
    "CompletionTime",
    "Cost",
    "Decision",
    "Filter",
    "FirstFree",
    "Freshness",
    "GpuAllowed",
    "LeastInflight",
    "LoraAffinity",
    "NotTried",
    "Picker",
    "Preference",
    "RoundRobin",
    "RouteRequest",
    "Scheduler",
    "Scored",
    "Scorer",
    "allowed_rank",
    "default_scheduler",
    "expected_completion_seconds",
    "fallback_step_seconds",
    "pool_drain_rate",
    "scheduler_from_config",
]
