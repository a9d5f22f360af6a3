"""The scheduler is just a loop (llm-d's `SchedulerProfile.Run`): filter, score, pick.

    1. snapshot every backend as a `Candidate` at `request.now`
    2. run the filters in order; the first that leaves nothing ends the run, and the decision
       names it and the GPU models tried
    3. run every scorer on the survivors, clamp each score to [0, 1], multiply by the scorer's
       weight (weights live here, never in the scorers) and add up per backend
    4. let the picker choose from the totals, and estimate the chosen backend's completion time

Every plugin's wall time is reported to `on_plugin_seconds(name, seconds)` (the gateway feeds its
`sdxl_gateway_plugin_seconds` histogram). No I/O; the only clock read is the timer used to measure
plugins.

Explaining a decision: `schedule(request, states, explain=True)` also records the candidates left
after each filter, the weights and the picker (`Decision.explanation`, as a dict through
`Decision.explained()`); so does DEBUG logging on this module's logger, which then logs every
decision. Otherwise nothing extra is built: the hot path pays one `isEnabledFor` per run.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache

from sdxlpool.api.gpu import display_name
from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.routing.estimates import DEFAULT_STEP_SECONDS, candidate_completion_seconds
from sdxlpool.gateway.routing.filters import Available, Freshness, GpuAllowed, NotTried
from sdxlpool.gateway.routing.pickers import Best
from sdxlpool.gateway.routing.plugins import Filter, Picker, Scorer
from sdxlpool.gateway.routing.scorers import CompletionTime, Cost, LoraAffinity, Preference
from sdxlpool.gateway.routing.types import Candidate, Decision, Explanation, FilterStep, RouteRequest, Scored
from sdxlpool.scaling.policy import WITHIN_SHARE

__all__ = ["Scheduler", "default_scheduler", "DEFAULT_WAIT_WEIGHT", "TARGET_COST_WEIGHT", "TARGET_WAIT_WEIGHT", "TARGET_WITHIN_SHARE"]

log = logging.getLogger(__name__)

# With a latency target T, default_scheduler adds the `cost` scorer on a per-step basis with a
# latency budget of TARGET_WITHIN_SHARE x T and weight TARGET_COST_WEIGHT (see its docstring). The
# share is the autoscaler's (sdxlpool.scaling.policy.WITHIN_SHARE): both call a model fast enough
# when it finishes a request within that budget.
TARGET_WITHIN_SHARE = WITHIN_SHARE
TARGET_COST_WEIGHT = 3.0

# The default profile's completion_time counts a second of queueing beyond one short job this many
# times a second of service (scorers/completion_time.py says why; docs/benchmarks.md "Routing in a
# model" has the sweep).
DEFAULT_WAIT_WEIGHT = 5.0
# With a latency target the cost scorer leads within the budget and the profile was tuned with plain
# expected completion: the wait weight there lost requests to the gateway queue's deadline in the
# autoscaling simulation's bursts (benchmarks/autoscaling.py, seed 4: 4 lost, none with weight 1).
TARGET_WAIT_WEIGHT = 1.0


class Scheduler:
    def __init__(
        self,
        filters: Sequence[Filter],
        scorers: Sequence[tuple[Scorer, float]],
        picker: Picker,
        on_plugin_seconds: Callable[[str, float], None] | None = None,
        *,
        default_step_seconds: float = DEFAULT_STEP_SECONDS,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        names = [scorer.name for scorer, _ in scorers]
        for scorer, weight in scorers:
            if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight) \
                    or weight < 0:
                raise ValueError(f"weight of scorer {scorer.name}: must be a number >= 0, got {weight!r}")
            if names.count(scorer.name) > 1:
                raise ValueError(f"scorer name {scorer.name!r} is used twice: give each instance its own name")
        self.filters = list(filters)
        self.scorers = [(scorer, float(weight)) for scorer, weight in scorers]
        self.picker = picker
        self.on_plugin_seconds = on_plugin_seconds
        self.default_step_seconds = default_step_seconds
        self._timer = timer

    def schedule(self, request: RouteRequest, states: Sequence[BackendState], *, explain: bool = False) -> Decision:
        """The decision for `request`; with `explain` (or DEBUG logging here) it carries its explanation."""
        if not (explain or log.isEnabledFor(logging.DEBUG)):
            return self._run(request, states, None)
        steps: list[FilterStep] = []
        decision = self._run(request, states, steps)
        candidates = tuple(state.backend.name for state in states)
        reached_scorers = decision.emptied_by is None and bool(candidates)  # no filter ended the run
        explanation = Explanation(
            candidates=candidates, filters=tuple(steps),
            weights={scorer.name: weight for scorer, weight in self.scorers} if reached_scorers else {},
            picker=self.picker.name if reached_scorers else "")
        decision = replace(decision, explanation=explanation)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("routing decision: %s", decision.explained())
        return decision

    def _run(self, request: RouteRequest, states: Sequence[BackendState], steps: list[FilterStep] | None
             ) -> Decision:
        """One run; each filter's survivors are appended to `steps` when it is given."""
        # 1. Snapshot.
        candidates = [Candidate.of(state, request.now) for state in states]
        everything = candidates
        if not candidates:
            return Decision(None, reason="no backends are configured", gpu_models=_tried(request, candidates))

        # 2. Filter; stop at the first filter that leaves nothing.
        for plugin in self.filters:
            started = self._timer()
            kept = plugin.filter(request, candidates)
            self._report(plugin.name, started)
            if steps is not None:
                steps.append(FilterStep(plugin.name, tuple(c.name for c in kept)))
            if not kept:
                return _empty(plugin, request, candidates, everything)
            candidates = kept

        # 3. Score: clamp, weigh, add up.
        scores: dict[str, dict[str, float]] = {}
        totals = {c.name: 0.0 for c in candidates}
        for scorer, weight in self.scorers:
            started = self._timer()
            raw = scorer.score(request, candidates)
            self._report(scorer.name, started)
            clamped = {c.name: _clamp(raw.get(c.name, 0.0)) for c in candidates}
            scores[scorer.name] = clamped
            for name, value in clamped.items():
                totals[name] += weight * value

        # 4. Pick.
        started = self._timer()
        chosen = self.picker.pick(request, [Scored(c, totals[c.name]) for c in candidates])
        self._report(self.picker.name, started)
        if chosen is None:
            return Decision(None, scores=scores, totals=totals, reason=f"picker {self.picker.name} chose nothing",
                            gpu_models=_tried(request, candidates))
        eta = candidate_completion_seconds(chosen, request.cost, candidates, self.default_step_seconds)
        return Decision(chosen.state, expected_seconds=eta, scores=scores, totals=totals,
                        gpu_models=_tried(request, candidates))

    def _report(self, name: str, started: float) -> None:
        if self.on_plugin_seconds is not None:
            self.on_plugin_seconds(name, max(0.0, self._timer() - started))


def default_scheduler(
    *,
    stale_after: float = 2.0,
    completion_weight: float = 1.0,
    wait_weight: float | None = None,
    preference_weight: float = 0.1,
    cost_weight: float = 0.0,
    cost_max_slowdown: float = 1.5,
    lora_weight: float = 0.2,
    lora_max_slowdown: float = 1.5,
    default_step_seconds: float = DEFAULT_STEP_SECONDS,
    latency_target: float | None = None,
    rng: random.Random | None = None,
    on_plugin_seconds: Callable[[str, float], None] | None = None,
) -> Scheduler:
    """The standard profile: soonest completion first (a second of queueing counting `wait_weight`
    seconds: DEFAULT_WAIT_WEIGHT, or TARGET_WAIT_WEIGHT with a latency target), GPU preference to
    settle near-ties, cost if enabled.

    Filters run gpu_allowed -> not_tried -> available -> freshness, so a 503 tells "no such GPU
    model in the pool" apart from "all of them are down". The cost scorer is left out at weight 0.

    `latency_target` (the pool's p95 goal in seconds; None: today's profile, unchanged) routes as
    the autoscaler sizes (sdxlpool.scaling.policy buys the models cheapest per normalised step
    first, as much as the target needs): the cost scorer joins with `basis="step"` and
    `within_seconds = TARGET_WITHIN_SHARE x latency_target` (0.7), so the worker cheapest per step
    among those that would finish within 70 % of the target wins, else the soonest. Not all of
    it, because the worker's queue is only part of a request's time: it may have waited in the
    gateway's queue, the estimate ignores the jobs' jitter, and a burst fills queues for the 1-2
    minutes new workers take to start; the rest of the target is left for those. Cheap workers
    are filled up to the budget, so the p95 lands near it: in benchmarks/autoscaling.py (30 s
    target) this budget gave a p95 of 19.8 s, nothing lost (trial runs: 14.8 s with half the
    target, 21.6 s with 80 %); 70 % also keeps the cheap RTX 4090s in use at tighter targets (an
    average request of 29 steps takes 4.9 s on one: within 70 % of a 9 s target, not within
    half of it). The autoscaler judges "fast enough" by the same share (sdxlpool.scaling.policy.WITHIN_SHARE), so it does not buy models
    the gateway would leave idle. Its weight (`cost_weight` if > 0, else
    TARGET_COST_WEIGHT = 3) lets price lead among the workers within the budget: an idle RTX 4090
    (0.5x an H100's speed, completion score 0.5) must beat an idle H100 when it is 45 % cheaper
    per step, which needs weight x 0.45 > 0.5 (and an RTX 3090 at 0.3x speed, weight x 0.4 > 0.7);
    3 clears both, and leaves speed to decide between models within ~15 % of each other's price.
    """
    if wait_weight is None:
        wait_weight = DEFAULT_WAIT_WEIGHT if latency_target is None else TARGET_WAIT_WEIGHT
    scorers: list[tuple[Scorer, float]] = [
        (CompletionTime(wait_weight=wait_weight, default_step_seconds=default_step_seconds), completion_weight),
        (Preference(), preference_weight),
    ]
    if lora_weight > 0:
        scorers.append((LoraAffinity(max_slowdown=lora_max_slowdown, default_step_seconds=default_step_seconds),
                        lora_weight))
    if latency_target is not None:
        if isinstance(latency_target, bool) or not isinstance(latency_target, int | float) \
                or not math.isfinite(latency_target) or latency_target <= 0:
            raise ValueError(f"latency_target: must be a number of seconds > 0, got {latency_target!r}")
        scorers.append((Cost(max_slowdown=cost_max_slowdown, within_seconds=TARGET_WITHIN_SHARE * latency_target,
                             basis="step", default_step_seconds=default_step_seconds),
                        cost_weight if cost_weight > 0 else TARGET_COST_WEIGHT))
    elif cost_weight > 0:
        scorers.append((Cost(max_slowdown=cost_max_slowdown, default_step_seconds=default_step_seconds),
                        cost_weight))
    return Scheduler(
        filters=[GpuAllowed(), NotTried(), Available(), Freshness(stale_after=stale_after)],
        scorers=scorers,
        picker=Best(rng=rng) if rng is not None else Best(),
        on_plugin_seconds=on_plugin_seconds,
        default_step_seconds=default_step_seconds,
    )


def _clamp(value: float) -> float:
    if not isinstance(value, int | float) or math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, float(value)))


@lru_cache(maxsize=1024)
def _display(gpu: str) -> str:
    try:
        return display_name(gpu)
    except ValueError:
        return gpu


def _models(candidates: Sequence[Candidate]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_display(c.backend.gpu) for c in candidates))


def _tried(request: RouteRequest, candidates: Sequence[Candidate]) -> tuple[str, ...]:
    """The GPU models this request could go to: the ones it allowed, else those in the pool."""
    if request.allowed_gpus:
        return tuple(dict.fromkeys(_display(gpu) for gpu in request.allowed_gpus))
    return _models(candidates)


def _empty(plugin: Filter, request: RouteRequest, before: list[Candidate], everything: list[Candidate]) -> Decision:
    tried = _tried(request, before)
    hint = getattr(plugin, "empty_reason", "")
    reason = f"no backend left after the {plugin.name} filter" + (f" ({hint})" if hint else "")
    reason += f"; GPU models tried: {', '.join(tried) or 'none'}"
    reason += f"; GPU models in the pool: {', '.join(_models(everything))}"
    return Decision(None, reason=reason, emptied_by=plugin.name, gpu_models=tried)
