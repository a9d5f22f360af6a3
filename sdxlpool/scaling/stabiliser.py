"""`Autoscaler`: recommendations over time -> the replicas to run, without flapping.

Like the HorizontalPodAutoscaler's stabilisation windows, in both directions: replicas go up to
the *lowest* recommendation of the last `scale_up_delay` seconds (more must have been wanted the
whole time) and down to the *highest* of the last `scale_down_delay` seconds (fewer must have been
enough the whole time). The window starts full of the starting size, so a fresh autoscaler (an
operator restart) does not act on its first sample. One exception: a model at zero replicas while
requests wait that it could serve starts at once, since those users wait for nothing else. Each
model's "too slow" verdict is carried from one step to the next (the policy's hysteresis).

Pure state, no I/O and no clock of its own: the operator, `sdxlpool up` and the benchmark call
`step(demand, current, now)` and apply what it returns.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from sdxlpool.scaling.demand import DemandReport
from sdxlpool.scaling.policy import Recommendation, ScalingPolicy, recommend

__all__ = ["Autoscaler", "ModelDecision", "ScalingDecision"]


@dataclass(frozen=True)
class ModelDecision:
    gpu: str
    current: int
    desired: int
    recommended: int
    reason: str
    predicted_p95: float | None = None

    @property
    def changed(self) -> bool:
        return self.desired != self.current


@dataclass(frozen=True)
class ScalingDecision:
    models: tuple[ModelDecision, ...]

    @property
    def replicas(self) -> dict[str, int]:
        return {m.gpu: m.desired for m in self.models}

    @property
    def changes(self) -> tuple[ModelDecision, ...]:
        return tuple(m for m in self.models if m.changed)


@dataclass
class Autoscaler:
    policy: ScalingPolicy
    started_at: float
    _history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    _too_slow: dict[str, bool] = field(default_factory=dict)  # each model's verdict at the last step

    def step(self, demand: DemandReport, current: Mapping[str, int], now: float) -> ScalingDecision:
        """One decision: `current` replicas per GPU model (missing: the spec's), at time `now`."""
        recommendations = recommend(self.policy, demand, too_slow_before=self._too_slow)
        self._too_slow = {gpu: rec.too_slow for gpu, rec in recommendations.items()}
        waiting_for = _waited_for(demand, [m.gpu for m in self.policy.models])
        decisions = []
        for model in self.policy.models:
            have = current.get(model.gpu, model.replicas)
            rec = recommendations[model.gpu]
            history = self._history.setdefault(model.gpu, deque([(self.started_at, have)]))
            history.append((now, rec.replicas))
            self._forget(history, now)
            desired, why = self._stabilised(model.gpu, history, rec, have, now, model.gpu in waiting_for)
            decisions.append(ModelDecision(model.gpu, have, desired, rec.replicas, why, rec.predicted_p95))
        return ScalingDecision(tuple(decisions))

    def _forget(self, history: deque[tuple[float, int]], now: float) -> None:
        keep = max(self.policy.scale_up_delay, self.policy.scale_down_delay)
        while len(history) > 1 and history[1][0] <= now - keep:  # keep one sample older than the window
            history.popleft()

    def _stabilised(self, gpu: str, history: deque[tuple[float, int]], rec: Recommendation, have: int,
                    now: float, waited_for: bool) -> tuple[int, str]:
        if rec.replicas > have and have == 0 and waited_for:
            return rec.replicas, f"{rec.reason}; requests wait for {gpu}: starting at once"
        up = _over_window(history, now, self.policy.scale_up_delay, min)
        down = _over_window(history, now, self.policy.scale_down_delay, max)
        if up > have:
            return up, rec.reason
        if down < have:
            return down, rec.reason
        if rec.replicas > have:
            return have, f"{rec.reason}; waiting out scaleUpDelay ({self.policy.scale_up_delay:g} s)"
        if rec.replicas < have:
            return have, f"{rec.reason}; waiting out scaleDownDelay ({self.policy.scale_down_delay:g} s)"
        return have, rec.reason


def _over_window(history: deque[tuple[float, int]], now: float, seconds: float, pick: Callable[[Iterable[int]], int]) -> int:
    """`pick` (min or max) of the recommendations in force during the last `seconds`: the newest
    sample plus every sample whose span overlaps the window."""
    since = now - seconds
    inside = [value for i, (at, value) in enumerate(history)
              if at >= since or (i + 1 < len(history) and history[i + 1][0] > since)]
    return pick(inside) if inside else history[-1][1]


def _waited_for(demand: DemandReport, pool: list[str]) -> set[str]:
    """GPU models some waiting request could be served by, where no such model is ready."""
    ready = {m.gpu for m in demand.models if m.ready > 0}
    wanted: set[str] = set()
    for c in demand.classes:
        if c.waiting and not (set(c.allowed) & ready if c.allowed else ready):
            wanted.update(c.allowed or pool)
    return wanted
