"""A discrete-event model of one pool behind R gateway replicas, with the gateway's real routing code.

Used by `benchmarks/routing_model.py`. A simulated clock, no processes, no network: each gateway
replica keeps its own `BackendState` per worker (the real class: dispatch / complete accounting,
`unseen_cost`) and its own `Scheduler` (the real plugins), and scrapes every worker every
`scrape_period` seconds at its own phase, as `sdxlpool.gateway.scraper` does. What a scrape shows
is the worker's exact state when the scrape reaches it. With `clairvoyant=True` the same scheduler
is fed the truth instead: every worker's exact remaining work (what it is running, its queue, and
what is on the wire to it from any replica) and exact speed at the instant of the decision, with no
scrape delay, and its requests reach the worker at once; that is the bound a rule can reach with
perfect information. `share_dispatches=True` gives every replica one shared view of the dispatches
(what gateway replicas that tell each other every dispatch would know; one replica scrapes).

Timing (the loopback figures of the HTTP benchmark, `benchmarks/routing.py`):

    arrival at replica --route_seconds--> dispatch (state.dispatch) --transit--> queued on the worker
    worker done --transit--> replica sees the answer (state.complete) and the client has it
    scrape sent at t --transit--> worker's state read --transit--> replica has it (scraped_at = t)

Workers run first come, first served, one job at a time, or with `batch_max` > 1 up to that many
waiting jobs of the same cost as one batch of n taking t(1) x (1 + alpha (n - 1)) (the sim-worker's
model). `pending_steps` = cost of the waiting jobs + what is left of the running ones (falling
step by step); `step_seconds` = the exact per-image figure for one job alone, and with batching the
worker's moving average per image at the batch size it ran (`sdxlpool.worker.jobs`). Every scrape
(and the clairvoyant view) carries `batch_max` as `sdxl_worker_batch_max` does.

Per decision the model records what the router believed (the chosen worker's expected completion,
and the work it thought was on each candidate) next to the truth (when the request really finished
there; the exact work on each candidate): `Outcome`.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sdxlpool.gateway.backends import Backend, BackendState
from sdxlpool.gateway.routing import RouteRequest, Scheduler, scheduler_from_config
from sdxlpool.gateway.worker_metrics import WorkerMetrics
from sdxlpool.testing.stats import percentile

__all__ = ["Pool", "Outcome", "simulate", "WORKER_EMA_WEIGHT"]

WORKER_EMA_WEIGHT = 0.3  # sdxlpool.worker.jobs._EMA_WEIGHT: the newest batch's weight in step_seconds


@dataclass(frozen=True)
class Pool:
    step_seconds: tuple[float, ...]  # per worker: exact seconds per normalised step
    gpus: tuple[str, ...]  # per worker: GPU model
    batch_max: int = 1
    batch_alpha: float = 0.5


@dataclass
class Outcome:
    """One request: where it went, when, and what the router believed there."""

    arrival: float
    cost: float
    replica: int
    worker: int = -1
    decided_at: float = 0.0
    finished_at: float | None = None  # when the client had the answer
    believed_seconds: float | None = None  # Decision.expected_seconds (from decided_at)
    believed_work: float | None = None  # the chosen worker's pending + unseen steps, as the router saw them
    true_work: float | None = None  # the chosen worker's exact steps (queued and in transit) at decided_at
    best_true_seconds: float | None = None  # the soonest exact completion over all workers at decided_at
    chosen_true_seconds: float | None = None  # the chosen worker's exact completion at decided_at

    @property
    def latency(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.arrival


@dataclass
class _Job:
    index: int
    cost: float
    started: float = 0.0
    duration: float = 0.0


@dataclass
class _Worker:
    step_seconds: float  # exact, per image alone
    measured: float  # what /metrics says (sdxl_worker_step_seconds)
    waiting: deque[_Job] = field(default_factory=deque)
    running: list[_Job] = field(default_factory=list)
    in_transit: float = 0.0  # steps dispatched, not arrived yet

    def pending(self, now: float) -> float:
        left = sum(j.cost * max(0.0, 1.0 - (now - j.started) / j.duration) if j.duration > 0 else 0.0
                   for j in self.running)
        return sum(j.cost for j in self.waiting) + left

    def busy_until(self, now: float) -> float:
        return max((j.started + j.duration for j in self.running), default=now)


class _Events:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self.now = 0.0

    def at(self, when: float, action: Callable[[], None]) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, action))

    def run(self, until: float) -> None:
        while self._heap and self._heap[0][0] <= until:
            self.now, _, action = heapq.heappop(self._heap)
            action()


def simulate(pool: Pool, arrivals: Sequence[float], costs: Sequence[float], *,
             scheduler: Callable[[random.Random], Scheduler] | Mapping[str, Any], clairvoyant: bool = False,
             replicas: int = 1, scrape_period: float = 0.1, transit: float = 0.001, route_seconds: float = 0.001,
             seed: int = 0, drain_seconds: float = 600.0, share_dispatches: bool = False) -> list[Outcome]:
    """Every request's `Outcome`. `scheduler`: a routing profile (as in a --routing file) or a factory
    taking the picker's random generator. The client sends request i to replica i mod `replicas`."""
    rng = random.Random(seed)
    events = _Events()
    workers = [_Worker(s, s) for s in pool.step_seconds]
    if clairvoyant:
        transit = route_seconds = 0.0
        replicas, share_dispatches = 1, False
    outcomes = [Outcome(arrival=a, cost=c, replica=i % replicas) for i, (a, c) in enumerate(zip(arrivals, costs, strict=True))]
    backends = [Backend(name=f"w{i:02d}", url=f"http://127.0.0.1:{9000 + i}", gpu=gpu)
                for i, gpu in enumerate(pool.gpus)]
    shared = [BackendState(b) for b in backends]
    states = [shared if share_dispatches else [BackendState(b) for b in backends] for _ in range(replicas)]
    factory = scheduler if callable(scheduler) else (
        lambda picker_rng: scheduler_from_config(scheduler, rng=picker_rng))  # type: ignore[arg-type]
    schedulers = [factory(random.Random(rng.random())) for _ in range(replicas)]

    def start_next(w: int) -> None:
        worker = workers[w]
        if worker.running or not worker.waiting:
            return
        now = events.now
        batch = [worker.waiting.popleft()]
        if pool.batch_max > 1:
            same = [j for j in worker.waiting if j.cost == batch[0].cost][:pool.batch_max - 1]
            for j in same:
                worker.waiting.remove(j)
            batch += same
        n = len(batch)
        duration = batch[0].cost * worker.step_seconds * (1 + pool.batch_alpha * (n - 1))
        for j in batch:
            j.started, j.duration = now, duration
        worker.running = batch
        if pool.batch_max > 1:
            sample = worker.step_seconds * (1 + pool.batch_alpha * (n - 1)) / n
            worker.measured = WORKER_EMA_WEIGHT * sample + (1 - WORKER_EMA_WEIGHT) * worker.measured
        events.at(now + duration, lambda: finish(w))

    def finish(w: int) -> None:
        worker = workers[w]
        done, worker.running = worker.running, []
        for job in done:
            events.at(events.now + transit, lambda job=job: answered(w, job))
        start_next(w)

    def answered(w: int, job: _Job) -> None:
        outcome = outcomes[job.index]
        outcome.finished_at = events.now
        if not clairvoyant:
            states[outcome.replica][w].complete(job.cost)

    def arrive_at_worker(w: int, job: _Job) -> None:
        workers[w].in_transit -= job.cost
        workers[w].waiting.append(job)
        start_next(w)

    def exact_seconds(w: int, cost: float, now: float) -> float:
        worker = workers[w]
        return (worker.pending(now) + worker.in_transit + cost) * worker.step_seconds

    def decide(i: int) -> None:
        outcome = outcomes[i]
        now = events.now
        outcome.decided_at = now
        truth = [exact_seconds(w, outcome.cost, now) for w in range(len(workers))]
        replica = exact_states(now) if clairvoyant else states[outcome.replica]
        decision = schedulers[outcome.replica].schedule(RouteRequest(cost=outcome.cost, now=now), replica)
        assert decision.state is not None, decision.reason
        choice = replica.index(decision.state)
        chosen = replica[choice]
        outcome.believed_seconds = decision.expected_seconds
        seen = chosen.metrics.pending_steps if chosen.metrics is not None else 0.0
        outcome.believed_work = seen + chosen.unseen_cost(now)
        chosen.dispatch(outcome.cost, now)
        outcome.worker = choice
        outcome.true_work = workers[choice].pending(now) + workers[choice].in_transit
        outcome.best_true_seconds = min(truth)
        outcome.chosen_true_seconds = truth[choice]
        job = _Job(i, outcome.cost)
        workers[choice].in_transit += job.cost
        events.at(now + transit, lambda: arrive_at_worker(choice, job))

    def exact_states(now: float) -> list[BackendState]:
        """What a clairvoyant gateway sees: a scrape of every worker at this instant, nothing unseen."""
        return [BackendState(b, metrics=metrics_of(w, now), scraped_at=now) for w, b in enumerate(backends)]

    def metrics_of(w: int, now: float) -> WorkerMetrics:
        worker = workers[w]
        return WorkerMetrics(queue_depth=float(len(worker.waiting)), inflight=float(len(worker.running)),
                             pending_steps=worker.pending(now) + worker.in_transit,
                             step_seconds=worker.step_seconds if clairvoyant else worker.measured,
                             ready=True, gpu_model=pool.gpus[w], batch_max=pool.batch_max)

    def scrape(r: int, w: int) -> None:
        sent = events.now

        def read() -> None:
            metrics = metrics_of(w, events.now)
            metrics = replace(metrics, pending_steps=metrics.pending_steps - workers[w].in_transit)  # not arrived yet
            events.at(events.now + transit, lambda: land(metrics))

        def land(metrics: WorkerMetrics) -> None:
            state = states[r][w]
            if state.scraped_at is None or sent >= state.scraped_at:
                state.metrics, state.scraped_at = metrics, sent

        events.at(sent + transit, read)
        if events.now < last_arrival + drain_seconds:
            events.at(sent + scrape_period, lambda: scrape(r, w))

    last_arrival = max(arrivals, default=0.0)
    if not clairvoyant:
        for r in range(1 if share_dispatches else replicas):
            phase = rng.random() * scrape_period
            for w in range(len(workers)):
                states[r][w].metrics = WorkerMetrics(0.0, 0.0, 0.0, workers[w].measured, True, pool.gpus[w],
                                                     batch_max=pool.batch_max)
                states[r][w].scraped_at = -1.0
                events.at(phase, lambda r=r, w=w: scrape(r, w))
    for i, outcome in enumerate(outcomes):
        events.at(outcome.arrival + route_seconds, lambda i=i: decide(i))
    events.run(last_arrival + drain_seconds)
    return outcomes


def summarise(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Latency percentiles, lost requests, and how the router's beliefs compared with the truth."""
    latencies = [o.latency for o in outcomes if o.latency is not None]
    decided = [o for o in outcomes if o.believed_seconds is not None and o.finished_at is not None]
    errors = [o.believed_seconds - (o.finished_at - o.decided_at) for o in decided]  # type: ignore[operator]
    work_errors = [o.believed_work - o.true_work for o in decided]  # type: ignore[operator]
    regret = [o.chosen_true_seconds - o.best_true_seconds for o in decided]  # type: ignore[operator]
    return {
        "requests": len(outcomes), "lost": len(outcomes) - len(latencies),
        "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
        "mean": _round(sum(latencies) / len(latencies)) if latencies else None,
        "belief": {
            "eta_bias_seconds": _round(_mean(errors)), "eta_abs_error_seconds": _round(_mean([abs(e) for e in errors])),
            "work_bias_steps": _round(_mean(work_errors)),
            "work_abs_error_steps": _round(_mean([abs(e) for e in work_errors])),
            "not_soonest_share": _round(sum(1 for r in regret if r > 1e-9) / len(regret)) if regret else None,
            "regret_mean_seconds": _round(_mean(regret)),
        },
    }


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, digits)
