"""`DemandTracker`: the demand the gateway sees, for the autoscaler (`GET /v1/demand`).

Pure apart from its clock (injectable, so tests drive time by hand); the service feeds it:

* `arrived(allowed, cost)`: a request passed its input checks (its allowed GPU slugs, its
  normalised-step cost), counted in a sliding window of `window` seconds;
* `wait(allowed, cost)` ... `done_waiting(token)`: a request waits in the gateway's queue (for room,
  or for a worker of a cold GPU model to start);
* `finished(seconds)`: a request ended well, after `seconds` at the gateway (the observed p95).

`report(states)` is the :class:`sdxlpool.scaling.DemandReport` of now: one class per set of allowed
GPU models (sorted; `()` = any model of the pool), one `ModelState` per GPU model the gateway has
workers of or was told the pool has (`pool_gpus`, listed even with no worker).

Memory is bounded: entries older than the window are dropped as time goes on, each deque is capped
(`_MAX_ENTRIES`), and at most `max_classes` distinct classes are ever told apart (Prometheus labels
included); requests of a class beyond that count as "any model" (`()`).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sdxlpool.gateway.backends import BackendState
from sdxlpool.scaling.demand import DemandClass, DemandReport, ModelState

__all__ = ["DemandTracker", "class_label", "is_ready", "model_states"]

_MAX_ENTRIES = 200_000  # per deque: a flood keeps the newest, never grows memory without end


def class_label(allowed: tuple[str, ...]) -> str:
    """A class as a Prometheus label value: its slugs joined by "," or "any"."""
    return ",".join(allowed) if allowed else "any"


@dataclass(frozen=True)
class _Waiter:
    allowed: tuple[str, ...]
    cost: float
    since: float


class DemandTracker:
    def __init__(self, window: float = 60.0, *, pool_gpus: Iterable[str] = (), max_classes: int = 1000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        self.window = float(window)
        self.pool_gpus = tuple(dict.fromkeys(pool_gpus))
        self.max_classes = max_classes
        self.clock = clock
        self._known: set[tuple[str, ...]] = {()}  # classes told apart so far (at most max_classes)
        self._arrivals: dict[tuple[str, ...], deque[tuple[float, float]]] = {}  # class -> (at, cost)
        self._waiters: dict[int, _Waiter] = {}
        self._tokens = itertools.count()
        self._finished: deque[tuple[float, float]] = deque(maxlen=_MAX_ENTRIES)  # (at, seconds)

    def class_of(self, allowed: Iterable[str]) -> tuple[str, ...]:
        """The class a request's allowed GPU slugs fall in: sorted, or `()` past `max_classes`."""
        key = tuple(sorted(set(allowed)))
        if key not in self._known:
            if len(self._known) >= self.max_classes:
                return ()
            self._known.add(key)
        return key

    # -- what the service reports --------------------------------------------------------------

    def arrived(self, allowed: Iterable[str], cost: float, now: float | None = None) -> tuple[str, ...]:
        """A request of `cost` normalised steps arrived; returns its class."""
        now = self.clock() if now is None else now
        key = self.class_of(allowed)
        arrivals = self._arrivals.setdefault(key, deque(maxlen=_MAX_ENTRIES))
        arrivals.append((now, float(cost)))
        self._prune(arrivals, now)
        return key

    def wait(self, allowed: Iterable[str], cost: float, now: float | None = None) -> int:
        """A request starts waiting in the gateway queue; the token for `done_waiting`."""
        token = next(self._tokens)
        self._waiters[token] = _Waiter(self.class_of(allowed), float(cost), self.clock() if now is None else now)
        return token

    def done_waiting(self, token: int) -> None:
        self._waiters.pop(token, None)

    def finished(self, seconds: float, now: float | None = None) -> None:
        """A request ended, after `seconds` at the gateway."""
        now = self.clock() if now is None else now
        self._finished.append((now, float(seconds)))
        self._prune(self._finished, now)

    # -- what it tells ---------------------------------------------------------------------------

    @property
    def waiting_count(self) -> int:
        return len(self._waiters)

    def waiting_steps(self) -> dict[tuple[str, ...], float]:
        """Normalised steps waiting in the gateway queue now, per class."""
        steps: dict[tuple[str, ...], float] = {}
        for waiter in self._waiters.values():
            steps[waiter.allowed] = steps.get(waiter.allowed, 0.0) + waiter.cost
        return steps

    def p95_seconds(self, now: float | None = None) -> float | None:
        """The 95th percentile (nearest rank) of finished requests' seconds over the window."""
        now = self.clock() if now is None else now
        self._prune(self._finished, now)
        if not self._finished:
            return None
        seconds = sorted(value for _, value in self._finished)
        rank = max(1, -(-len(seconds) * 95 // 100))  # ceil(0.95 n), 1-based
        return seconds[rank - 1]

    def report(self, states: Iterable[BackendState], now: float | None = None) -> DemandReport:
        """Demand per class over the window, and the GPU models' workers as they are now.

        `now` is the clock's (the same monotonic clock as the pool's states)."""
        now = self.clock() if now is None else now
        classes: dict[tuple[str, ...], dict[str, Any]] = {}
        for key in list(self._arrivals):
            arrivals = self._arrivals[key]
            self._prune(arrivals, now)
            if not arrivals:
                del self._arrivals[key]
                continue
            into = classes.setdefault(key, _empty_class())
            into["arrivals_per_second"] = len(arrivals) / self.window
            into["steps_per_second"] = sum(cost for _, cost in arrivals) / self.window
            into["steps_cv2"] = _squared_cv([cost for _, cost in arrivals])
        for waiter in self._waiters.values():
            into = classes.setdefault(waiter.allowed, _empty_class())
            into["waiting"] += 1
            into["waiting_steps"] += waiter.cost
            into["oldest_wait_seconds"] = max(into["oldest_wait_seconds"], now - waiter.since)
        return DemandReport(
            window_seconds=self.window,
            classes=tuple(DemandClass(allowed=key, arrivals_per_second=v["arrivals_per_second"],
                                      steps_per_second=v["steps_per_second"], waiting=int(v["waiting"]),
                                      waiting_steps=v["waiting_steps"],
                                      oldest_wait_seconds=max(0.0, v["oldest_wait_seconds"]),
                                      steps_cv2=v.get("steps_cv2"))
                          for key, v in sorted(classes.items())),
            models=model_states(states, now, pool_gpus=self.pool_gpus),
            p95_seconds=self.p95_seconds(now))

    def _prune(self, entries: deque[tuple[float, float]], now: float) -> None:
        cutoff = now - self.window
        while entries and entries[0][0] <= cutoff:
            entries.popleft()


def _squared_cv(sizes: list[float]) -> float | None:
    """Variance / mean^2 of the request sizes: how regular the jobs are, which the autoscaler's
    queueing model uses (Allen-Cunneen); none from a single request."""
    if len(sizes) < 2:
        return None
    mean = sum(sizes) / len(sizes)
    if mean <= 0:
        return None
    return sum((size - mean) ** 2 for size in sizes) / len(sizes) / (mean * mean)


def _empty_class() -> dict[str, Any]:
    return {"arrivals_per_second": 0.0, "steps_per_second": 0.0, "waiting": 0.0, "waiting_steps": 0.0,
            "oldest_wait_seconds": 0.0}


def is_ready(state: BackendState, now: float) -> bool:
    """Available and ready to serve: an sdxlpool worker whose last scrape said its model is loaded,
    a plain A1111 server that answered a scrape."""
    if not state.available(now):
        return False
    if state.backend.kind == "a1111":
        return state.scraped_at is not None
    return state.metrics is not None and state.metrics.ready


def model_states(states: Iterable[BackendState], now: float, *, pool_gpus: Iterable[str] = ()) -> tuple[ModelState, ...]:
    """One `ModelState` per GPU model of `states` and of `pool_gpus` (those even with no worker), by slug."""
    by_gpu: dict[str, list[BackendState]] = {gpu: [] for gpu in pool_gpus}
    for state in states:
        by_gpu.setdefault(state.backend.gpu, []).append(state)
    models = []
    for gpu in sorted(by_gpu):
        workers = by_gpu[gpu]
        ready = [s for s in workers if is_ready(s, now)]
        speeds = [s.metrics.step_seconds for s in ready if s.metrics is not None and s.metrics.step_seconds > 0]
        prices = [s.backend.price_per_hour for s in workers if s.backend.price_per_hour is not None]
        models.append(ModelState(
            gpu=gpu, workers=len(workers), ready=len(ready),
            seconds_per_step=statistics.median(speeds) if speeds else None,
            pending_steps=sum((s.metrics.pending_steps if s.metrics else 0.0) + s.unseen_cost(now) for s in workers),
            price_per_hour=min(prices) if prices else None))
    return tuple(models)
