"""Autoscaling over a day: a fixed pool, an HPA-like utilisation autoscaler and sdxlpool's, side by side.

A discrete-event SIMULATION, not a load test: a simulated clock, no processes, no sleeping, no
network. Seeded and deterministic: the same arguments give the same figures on any machine (one
`random.Random` per stream: arrivals, request sizes, service jitter, start-up delays), and every
policy sees the SAME arrivals, the same request sizes and the same k-th start-up delay. The default
day (about 22,000 requests) takes a few seconds of wall time per policy.

    python benchmarks/autoscaling.py [--hours 6] [--peak-rps 2.0] [--target 30] [--seed 1] [--sweep 7.5,10]
                                     [--no-min0] [--no-matched] [--out FILE]
    python benchmarks/autoscaling.py --smoke --out FILE   # CI: 20 simulated minutes, in a second

The pool: five GPU models with the relative SDXL speeds of `sdxlpool.scaling.speeds` (seconds per
normalised step = 0.085 s / relative speed: H100 1.0, A100 0.55, L40S 0.5, RTX 4090 0.5, RTX 3090
0.3) and typical on-demand prices per GPU-hour (`PRICES`: list prices of GPU clouds such as Lambda
and RunPod, rounded, late 2026; Akash leases are often lower). Each entry has minReplicas 1 (an
HPA cannot scale a Deployment from zero: with no pod there is no utilisation) and a maxReplicas.

The day: `--hours` simulated hours carry a whole 24 h day's shape (compressed: with the default 6,
one hour of the day lasts 15 simulated minutes), quiet at 04:00 (10% of the peak), busiest around
16:00, plus seeded bursts (2-2.5x for 3-8 minutes). Arrivals are a non-homogeneous Poisson process.
A request is 20-40 Euler steps at 1024x1024 or a hires job (its normalised steps, as the gateway
counts them); `--restricted` of them (10%) allow only an H100 or an A100 (`X-SDXL-GPU`).

The gateway, as sdxlpool's, with its real routing code (`sdxlpool.gateway.routing.default_scheduler`,
the plugins themselves, fed each worker as if just scraped: its queued work in normalised steps and
its model's seconds per step): among the allowed, ready, not draining workers whose queued work
lasts under `backlog_seconds` (60 s), the fixed pool and the HPA-like one route with today's default
(soonest expected completion: queued work + this job, at the model's speed, no price), ours with the
pool's latency target (`default_scheduler(latency_target=...)`: the worker cheapest per normalised
step among those that would finish within 70% of the target, else the soonest), as the gateway does
when the pool has a latency target. When no worker has room the request waits in the gateway queue
(100 places, 30 s deadline, then 429: counted as LOST, as is a full queue). Each worker runs one
job at a time; a job takes its steps x the model's seconds per step x a jitter of +-10%.
A new worker is paid from its creation and is ready after a start-up delay of 60-120 s; a removed
worker drains (no new job, finishes what it holds; paid until then). Removal takes a starting
worker first, else the ready one with the least queued work (a ReplicaSet's order, roughly).

The policies, every 15 simulated seconds, on the same pool bounds:

* fixed: `FIXED` replicas per model all day, sized for the peak with bursts at about 70% busy.
* hpa: one HorizontalPodAutoscaler per GPU model's Deployment, on its pods' GPU busy fraction over
  the last 60 s, target 70% (the Kubernetes formula desired = ceil(ready x utilisation / 0.70), 10%
  tolerance, starting pods counted at 0% when scaling up, no action with no ready pod), the
  default behaviours (scale-up: the larger of +4 pods and +100% per 15 s, no stabilisation;
  scale-down: 300 s stabilisation window, 100% per 15 s; as Kubernetes' autoscaling/v2 defaults and
  the controller manager's default flags), minReplicas..maxReplicas. No price, no notion of which
  model a request allowed.
* ours: `sdxlpool.scaling.Autoscaler` (the operator's code, scaleUpDelay 15 s, scaleDownDelay
  300 s, the pool's latency target) fed a `DemandReport` built from the simulated gateway's view
  (60 s window per class of allowed models, waiting requests, per model ready workers, measured
  seconds per step, queued steps, price, and the spread of request sizes: `steps_cv2`, which
  lets the policy use the Allen-Cunneen correction for regular jobs).
* hpa-target-routing (unless --no-hpa-routed): the HPA-like autoscaler behind the target-aware
  routing of ours, to show what the routing alone gives.
* ours-min0 (unless --no-min0): ours with minReplicas 0 for every model but the H100 (scale to
  zero, which an HPA on utilisation cannot do).
* ours-at-hpa-p95 (unless --no-matched): ours again, its latency target set to the p95 the HPA
  reached in this run, to compare cost at an equal p95 rather than at the pool's target.
* the sweep (`--sweep`, default 8,9,10,12,15,20): ours at other latency targets, cost against p95;
  with ours-at-hpa-p95 it gives ours' cost at the HPA's p95 (`goal.at_hpa_p95`: the cheapest run
  with an equal or better p95, and the cost interpolated between the runs around it).

Figures per policy: cost per 1000 images (GPU-seconds from creation to stop, start-up and draining
included, x price), p50/p95/p99 latency (arrival to answer), minutes whose rolling 5-minute p95
(answers in the last 5 simulated minutes) was over the pool's target (and, for rows with a target of
their own, over it), lost requests, replica changes (Deployment scale events and workers started),
mean ready workers (sampled every 15 s), each model's GPU-hours and busy share. The day, the pool
and the policies are fixed in this file; results and their reading: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import bisect
import heapq
import math
import random
import sys
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxlpool.gateway.backends import Backend, BackendState
from sdxlpool.gateway.routing import RouteRequest, Scheduler, default_scheduler
from sdxlpool.gateway.worker_metrics import WorkerMetrics
from sdxlpool.scaling import (
    Autoscaler,
    DemandClass,
    DemandReport,
    ModelPolicy,
    ModelState,
    ScalingPolicy,
)
from sdxlpool.scaling.speeds import H100_SECONDS_PER_STEP, RELATIVE_SPEED
from sdxlpool.testing.pool import write_report
from sdxlpool.testing.stats import percentile

RESULTS = Path(__file__).resolve().parent / "results"
GPUS = ("h100", "a100", "l40s", "rtx-4090", "rtx-3090")
PRICES = {"h100": 2.49, "a100": 1.79, "l40s": 0.86, "rtx-4090": 0.69, "rtx-3090": 0.43}  # $/GPU-hour
MIN_REPLICAS = {gpu: 1 for gpu in GPUS}
MIN0 = {gpu: 1 if gpu == "h100" else 0 for gpu in GPUS}  # ours-min0: scale to zero, which an HPA cannot
MAX_REPLICAS = {"h100": 6, "a100": 6, "l40s": 6, "rtx-4090": 10, "rtx-3090": 12}
FIXED = {"h100": 3, "a100": 3, "l40s": 3, "rtx-4090": 6, "rtx-3090": 8}  # peak with bursts at ~70% busy
RESTRICTED = ("a100", "h100")  # the allowed set of restricted requests, sorted like the gateway's classes
MIX = ((20, 0.25), (25, 0.40), (30, 0.15), (40, 0.10), (56.25, 0.10))  # normalised steps, share (hires: 25 x 2.25)
SYNC_SECONDS = 15.0
WINDOW_SECONDS = 60.0  # the gateway's demand window and the HPA's utilisation window
BACKLOG_SECONDS = 60.0  # gateway: a worker whose queued work lasts longer has no room
QUEUE_SIZE, QUEUE_DEADLINE = 100, 30.0  # gateway queue
STARTUP = (60.0, 120.0)
HPA_TARGET, HPA_TOLERANCE, HPA_DOWN_WINDOW = 0.70, 0.10, 300.0
ROLLING_SECONDS = 300.0


def seconds_per_step(gpu: str) -> float:
    return H100_SECONDS_PER_STEP / RELATIVE_SPEED[gpu]


# -- the trace ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    index: int
    at: float
    steps: float
    allowed: tuple[str, ...]  # () = any model
    jitter: float


def day_shape(day_hour: float) -> float:
    """Share of the peak rate at an hour of the day: 0.1 at 04:00, 1.0 at 16:00."""
    wave = (1 - math.cos(2 * math.pi * (day_hour - 4) / 24)) / 2
    return 0.1 + 0.9 * wave ** 1.5


def make_trace(seed: int, seconds: float, peak_rps: float, restricted: float, bursts: int) -> tuple[
        list[Request], list[tuple[float, float, float]]]:
    """Seeded arrivals over `seconds` (a whole day's shape) and the bursts (start, end, factor)."""
    burst_rng = random.Random(seed * 7 + 1)
    spans = []
    for _ in range(bursts):
        start = burst_rng.uniform(0.05, 0.95) * seconds
        spans.append((start, start + burst_rng.uniform(180, 480), burst_rng.uniform(2.0, 2.5)))

    def rate(t: float) -> float:
        factor = max((f for a, b, f in spans if a <= t < b), default=1.0)
        return peak_rps * day_shape(24 * t / seconds) * factor

    top = peak_rps * max((f for *_, f in spans), default=1.0)
    arrivals, sizes, jitters = random.Random(seed), random.Random(seed * 7 + 2), random.Random(seed * 7 + 3)
    steps, weights = zip(*MIX, strict=True)
    requests: list[Request] = []
    t = 0.0
    while True:  # thinning (Lewis-Shedler): candidates at the top rate, kept with rate(t) / top
        t += arrivals.expovariate(top)
        if t >= seconds:
            break
        if arrivals.random() * top > rate(t):
            continue
        size = sizes.choices(steps, weights)[0]
        allowed = RESTRICTED if sizes.random() < restricted else ()
        requests.append(Request(len(requests), t, size, allowed, jitters.uniform(0.9, 1.1)))
    return requests, spans


# -- the simulated pool ---------------------------------------------------------------------------

@dataclass(eq=False)
class Worker:
    gpu: str
    created: float
    ready_at: float
    sps: float  # seconds per normalised step
    draining: bool = False
    stopped: float | None = None
    queue: deque[Request] = field(default_factory=deque)
    running: Request | None = None
    run_end: float = 0.0
    free_at: float = 0.0  # expected time its work is done (estimates: steps x sps)
    busy_total: float = 0.0  # busy seconds of finished jobs
    run_start: float = 0.0
    samples: deque[tuple[float, float]] = field(default_factory=deque)  # (t, busy seconds so far)
    state: BackendState | None = None  # what the gateway's scheduler sees of it (set by Simulation._add)

    def ready(self, now: float) -> bool:
        return now >= self.ready_at and self.stopped is None

    def busy_until_now(self, now: float) -> float:
        return self.busy_total + (now - self.run_start if self.running is not None else 0.0)

    def queued_seconds(self, now: float) -> float:
        return max(0.0, self.free_at - now)

    def pending_steps(self, now: float) -> float:
        left = sum(r.steps for r in self.queue)
        if self.running is not None:
            left += self.running.steps * max(0.0, self.run_end - now) / max(1e-9, self.run_end - self.run_start)
        return left


class Simulation:
    """One policy over the trace. `controller(sim, now)` runs every 15 s and calls `scale`."""

    def __init__(self, name: str, requests: list[Request], seconds: float, start: dict[str, int],
                 startup_delays: list[float], controller: Callable[[Simulation, float], None], *,
                 scheduler: Scheduler | None = None) -> None:
        self.name, self.requests, self.seconds, self.controller = name, requests, seconds, controller
        # The gateway's real routing code (sdxlpool.gateway.routing); today's default profile unless given.
        self.scheduler = scheduler if scheduler is not None else gateway_scheduler(None)
        self.by_name: dict[str, Worker] = {}
        self.report_spread = True  # the demand report carries the request sizes' spread (steps_cv2)
        self.startup_delays, self.started_workers = startup_delays, 0
        self.workers: list[Worker] = []  # not stopped yet (stopped ones move to `retired` every 15 s)
        self.retired: list[Worker] = []
        self.replicas = dict(start)
        self.events: list[tuple[float, int, str, Any]] = []
        self.seq = 0
        self.waiting: list[Request] = []  # the gateway queue, in arrival order
        self.done: list[tuple[float, float, str]] = []  # (answered at, latency, gpu)
        self.lost: Counter[str] = Counter()
        self.scale_events = 0
        self.arrived: dict[tuple[str, ...], deque[tuple[float, float]]] = {}
        self.measured: set[str] = set()
        self.ready_seconds = 0.0  # ready workers x seconds, sampled every 15 s
        self.replica_log: list[tuple[float, dict[str, int]]] = [(0.0, dict(start))]
        for gpu, n in start.items():
            for _ in range(n):
                self._add(gpu, 0.0, warm=True)

    # events
    def _push(self, at: float, kind: str, payload: Any = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload))

    def run(self) -> None:
        for r in self.requests:
            self._push(r.at, "arrival", r)
        tick = 0.0
        while tick < self.seconds:
            tick += SYNC_SECONDS
            self._push(tick, "tick")
        last = 0.0
        while self.events:
            now, _, kind, payload = heapq.heappop(self.events)
            last = now
            if kind == "arrival":
                self.arrived.setdefault(payload.allowed, deque()).append((now, payload.steps))
                self._route(payload, now)
            elif kind == "done":
                self._finish(payload, now)
            elif kind == "ready":
                self._dispatch_waiting(now)
            elif kind == "tick":
                self._sample(now)
                self._expire(now)
                if now <= self.seconds:
                    self.controller(self, now)
        end = max(last, self.seconds)
        for w in self.workers:
            if w.stopped is None:
                w.stopped = end
        self.retired.extend(self.workers)
        self.workers = []
        self.lost["never served"] += len(self.waiting)  # still waiting when the day ended
        self.waiting.clear()
        if not self.lost["never served"]:
            del self.lost["never served"]

    # workers
    def _add(self, gpu: str, now: float, warm: bool = False) -> None:
        delay = 0.0
        if not warm:
            delay = self.startup_delays[self.started_workers % len(self.startup_delays)]
            self.started_workers += 1
            self._push(now + delay, "ready")
        w = Worker(gpu, now, now + delay, seconds_per_step(gpu), free_at=now + delay)
        name = f"{gpu}-{len(self.by_name)}"
        w.state = BackendState(Backend(name=name, url=f"http://{name}.sim", gpu=gpu, price_per_hour=PRICES[gpu]))
        self.by_name[name] = w
        w.samples.append((now + delay, 0.0))
        self.workers.append(w)

    def _remove(self, gpu: str, now: float) -> None:
        mine = [w for w in self.workers if w.gpu == gpu and w.stopped is None and not w.draining]
        starting = [w for w in mine if not w.ready(now)]
        if starting:
            victim = max(starting, key=lambda w: w.created)
            victim.stopped = now  # never ready: stopped at once
            return
        victim = min(mine, key=lambda w: (w.queued_seconds(now), -w.created))
        victim.draining = True
        if victim.running is None and not victim.queue:
            victim.stopped = now

    def scale(self, wanted: dict[str, int], now: float) -> None:
        for gpu, n in wanted.items():
            have = self.replicas[gpu]
            if n == have:
                continue
            self.scale_events += 1
            for _ in range(n - have):
                self._add(gpu, now)
            for _ in range(have - n):
                self._remove(gpu, now)
            self.replicas[gpu] = n
        self.replica_log.append((now, dict(self.replicas)))

    # the gateway
    def _candidates(self, r: Request, now: float) -> list[Worker]:
        return [w for w in self.workers if w.ready(now) and not w.draining
                and (not r.allowed or w.gpu in r.allowed) and w.queued_seconds(now) < BACKLOG_SECONDS]

    def _route(self, r: Request, now: float) -> None:
        if not self._send(r, now):
            if len(self.waiting) >= QUEUE_SIZE:
                self.lost["gateway queue full"] += 1
            else:
                self.waiting.append(r)

    def _send(self, r: Request, now: float) -> bool:
        candidates = self._candidates(r, now)
        if not candidates:
            return False
        w = self._pick(r, candidates, now)
        w.free_at = max(w.free_at, now) + r.steps * w.sps
        w.queue.append(r)
        if w.running is None:
            self._start_next(w, now)
        return True

    def _pick(self, r: Request, candidates: list[Worker], now: float) -> Worker:
        """The real scheduler's choice among `candidates`, each seen as a worker just scraped: its
        queued work in normalised steps (the estimate free_at - now, as the gateway's own
        accounting would count it) and its model's seconds per step. The allowed models and the
        backlog bound are applied by `_candidates` (a set, no preference order: `allowed_gpus` is
        left empty, so the `preference` scorer stays neutral)."""
        states = []
        for w in candidates:
            state = w.state
            assert state is not None
            state.metrics = WorkerMetrics(queue_depth=0.0, inflight=0.0, pending_steps=w.queued_seconds(now) / w.sps,
                                          step_seconds=w.sps, ready=True, gpu_model=w.gpu)
            state.scraped_at = now
            states.append(state)
        decision = self.scheduler.schedule(RouteRequest(cost=r.steps, now=now), states)
        assert decision.state is not None, decision.reason
        return self.by_name[decision.state.name]

    def _start_next(self, w: Worker, now: float) -> None:
        r = w.queue.popleft()
        w.running, w.run_start = r, now
        w.run_end = now + r.steps * w.sps * r.jitter
        self._push(w.run_end, "done", w)

    def _finish(self, w: Worker, now: float) -> None:
        r = w.running
        assert r is not None
        w.busy_total += now - w.run_start
        w.running = None
        self.done.append((now, now - r.at, w.gpu))
        self.measured.add(w.gpu)
        if w.queue:
            self._start_next(w, now)
        else:
            w.free_at = now  # estimates and jitter meet again when it is idle
            if w.draining:
                w.stopped = now
        self._dispatch_waiting(now)

    def _expire(self, now: float) -> None:
        kept = []
        for r in self.waiting:
            if now - r.at > QUEUE_DEADLINE:
                self.lost["gateway queue deadline"] += 1
            else:
                kept.append(r)
        self.waiting = kept

    def _dispatch_waiting(self, now: float) -> None:
        if not self.waiting:
            return
        kept = []
        for r in self.waiting:
            if now - r.at > QUEUE_DEADLINE:
                self.lost["gateway queue deadline"] += 1
            elif not self._send(r, now):
                kept.append(r)
        self.waiting = kept

    def _sample(self, now: float) -> None:
        self.retired.extend(w for w in self.workers if w.stopped is not None)
        self.workers = [w for w in self.workers if w.stopped is None]
        self.ready_seconds += SYNC_SECONDS * sum(1 for w in self.workers if w.ready(now) and not w.draining)
        for w in self.workers:
            if w.ready(now):
                w.samples.append((now, w.busy_until_now(now)))
                while len(w.samples) > 1 and w.samples[1][0] <= now - WINDOW_SECONDS:
                    w.samples.popleft()

    # what controllers read
    def ready_workers(self, gpu: str, now: float) -> list[Worker]:
        return [w for w in self.workers if w.gpu == gpu and w.ready(now) and not w.draining]

    def starting_workers(self, gpu: str, now: float) -> list[Worker]:
        return [w for w in self.workers if w.gpu == gpu and w.stopped is None and not w.ready(now)]

    def demand(self, now: float) -> DemandReport:
        """What the gateway's GET /v1/demand would say now."""
        classes = []
        for allowed in sorted(set(self.arrived) | {r.allowed for r in self.waiting}):
            window = self.arrived.get(allowed, deque())
            while window and window[0][0] <= now - WINDOW_SECONDS:
                window.popleft()
            waiting = [r for r in self.waiting if r.allowed == allowed]
            mean = sum(s for _, s in window) / len(window) if window else 0.0
            cv2 = sum((s - mean) ** 2 for _, s in window) / len(window) / mean ** 2 if mean > 0 else None
            classes.append(DemandClass(
                allowed=allowed, arrivals_per_second=len(window) / WINDOW_SECONDS,
                steps_per_second=sum(s for _, s in window) / WINDOW_SECONDS, waiting=len(waiting),
                waiting_steps=sum(r.steps for r in waiting),
                oldest_wait_seconds=max((now - r.at for r in waiting), default=0.0),
                steps_cv2=cv2 if self.report_spread else None))
        models = []
        for gpu in GPUS:
            ready = self.ready_workers(gpu, now)
            models.append(ModelState(
                gpu=gpu, workers=len(ready) + len(self.starting_workers(gpu, now)), ready=len(ready),
                seconds_per_step=seconds_per_step(gpu) if gpu in self.measured and ready else None,
                pending_steps=sum(w.pending_steps(now) for w in ready), price_per_hour=PRICES[gpu]))
        recent = [lat for at, lat, _ in self.done[-2000:] if at > now - WINDOW_SECONDS]
        p95 = percentile(recent, 95)
        return DemandReport(window_seconds=WINDOW_SECONDS, classes=tuple(classes), models=tuple(models),
                            p95_seconds=p95)


# -- the policies ---------------------------------------------------------------------------------

def fixed_controller(sim: Simulation, now: float) -> None:
    pass


@dataclass
class Hpa:
    """One HorizontalPodAutoscaler per GPU model's Deployment (Kubernetes' replica calculator and
    default behaviours, on a per-pod utilisation metric: the GPU's busy fraction)."""

    history: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    target: float = HPA_TARGET  # the utilisation each Deployment's HPA aims at

    def __call__(self, sim: Simulation, now: float) -> None:
        wanted = {}
        for gpu in GPUS:
            current = sim.replicas[gpu]
            rec = self._recommend(sim, gpu, current, now, self.target)
            history = self.history.setdefault(gpu, deque())
            history.append((now, rec))
            while history and history[0][0] < now - HPA_DOWN_WINDOW:
                history.popleft()
            desired = current
            if rec > current:  # scale-up: no stabilisation, at most max(+4, +100%) per period
                desired = min(rec, max(current + 4, 2 * current))
            else:
                down = max(r for _, r in history)  # the highest of the last 300 s
                if down < current:
                    desired = down
            wanted[gpu] = min(max(desired, MIN_REPLICAS[gpu]), MAX_REPLICAS[gpu])
        sim.scale(wanted, now)

    @staticmethod
    def _recommend(sim: Simulation, gpu: str, current: int, now: float, target: float) -> int:
        if current == 0:
            return 0  # HPA is off for a Deployment at zero
        ready = sim.ready_workers(gpu, now)
        if not ready:
            return current  # no metrics: hold
        utils = []
        for w in ready:
            t0, b0 = w.samples[0]
            span = now - t0
            utils.append((w.busy_until_now(now) - b0) / span if span > 0 else 0.0)
        ratio = sum(utils) / len(utils) / target
        counted = len(ready)
        starting = len(sim.starting_workers(gpu, now))
        if ratio > 1 and starting:  # unready pods count as 0% when scaling up
            counted = len(ready) + starting
            ratio = sum(utils) / counted / target
            if ratio <= 1:
                return current
        if abs(ratio - 1) <= HPA_TOLERANCE:
            return current
        return math.ceil(ratio * counted)


@dataclass
class Ours:
    autoscaler: Autoscaler

    def __call__(self, sim: Simulation, now: float) -> None:
        decision = self.autoscaler.step(sim.demand(now), sim.replicas, now)
        sim.scale(decision.replicas, now)


def gateway_scheduler(latency_target: float | None, seed: int = 0) -> Scheduler:
    """The gateway's routing: `default_scheduler` as the gateway builds it, with the pool's latency
    target for ours (cheapest per step among workers within half the target, else soonest), without
    for the peers (soonest completion). Ties are drawn with a seeded generator."""
    return default_scheduler(latency_target=latency_target, rng=random.Random(seed))


def ours_policy(target: float, start: dict[str, int]) -> ScalingPolicy:
    """sdxlpool's autoscaling for the pool; `start` is also each model's minReplicas."""
    return ScalingPolicy(
        models=tuple(ModelPolicy(gpu=gpu, replicas=start[gpu], min_replicas=start[gpu],
                                 max_replicas=MAX_REPLICAS[gpu], price_per_hour=PRICES[gpu]) for gpu in GPUS),
        p95_target=target, scale_up_delay=15.0, scale_down_delay=300.0)


# -- figures ----------------------------------------------------------------------------------------

def figures(sim: Simulation, target: float, seconds: float) -> dict[str, Any]:
    latencies = [lat for _, lat, _ in sim.done]
    cost = sum((w.stopped - w.created) * PRICES[w.gpu] / 3600 for w in sim.retired if w.stopped is not None)
    gpu_seconds: dict[str, float] = dict.fromkeys(GPUS, 0.0)
    busy: dict[str, float] = dict.fromkeys(GPUS, 0.0)
    for w in sim.retired:
        if w.stopped is not None:
            gpu_seconds[w.gpu] += w.stopped - w.created
            busy[w.gpu] += w.busy_total
    misses, minutes = minutes_over(sim, target, seconds)
    served = Counter(gpu for _, _, gpu in sim.done)
    images = len(sim.done)
    return {
        "images": images, "lost": sum(sim.lost.values()), "lost_by_reason": dict(sim.lost),
        "cost_dollars": round(cost, 3),
        "cost_per_1000_images": round(1000 * cost / images, 4) if images else None,
        "p50": percentile(latencies, 50), "p95": percentile(latencies, 95), "p99": percentile(latencies, 99),
        "rolling_p95_minutes_over_target": misses, "minutes": minutes,
        "replica_changes": sim.scale_events, "workers_started": sim.started_workers,
        "mean_ready_workers": round(sim.ready_seconds / seconds, 2),
        "gpu_hours": {gpu: round(s / 3600, 3) for gpu, s in sorted(gpu_seconds.items())},
        "busy_share": {gpu: round(busy[gpu] / s, 3) for gpu, s in sorted(gpu_seconds.items()) if s > 0},
        "served_by": dict(sorted(served.items())),
        "max_replicas_seen": {gpu: max(r[gpu] for _, r in sim.replica_log) for gpu in GPUS},
    }


def minutes_over(sim: Simulation, target: float, seconds: float) -> tuple[int, int]:
    """Simulated minutes whose rolling p95 (answers in the last 5 minutes) was over `target`, of all."""
    answered = sorted(sim.done)
    times = [a for a, _, _ in answered]
    misses, minutes = 0, int(seconds // 60)
    for m in range(1, minutes + 1):
        end = m * 60.0
        lo, hi = bisect.bisect_right(times, end - ROLLING_SECONDS), bisect.bisect_right(times, end)
        p95 = percentile((lat for _, lat, _ in answered[lo:hi]), 95)
        if p95 is not None and p95 > target:
            misses += 1
    return misses, minutes


def at_p95(runs: list[dict[str, Any]], peer: dict[str, Any]) -> dict[str, Any]:
    """Ours at the peer's p95, from ours' runs at several targets: the cheapest run whose p95 is
    equal or better, and the cost interpolated linearly (in p95) between the two runs around it."""
    p95, cost = peer["p95"], peer["cost_per_1000_images"]
    runs = sorted((r for r in runs if r["p95"] is not None and r["cost_per_1000_images"]), key=lambda r: r["p95"])
    within = [r for r in runs if r["p95"] <= p95 and r["lost"] == 0]
    best = min(within, key=lambda r: r["cost_per_1000_images"], default=None)
    below = [r for r in runs if r["p95"] <= p95]
    above = [r for r in runs if r["p95"] > p95]
    interpolated = None
    if below and above:
        lo, hi = below[-1], above[0]
        share = (p95 - lo["p95"]) / (hi["p95"] - lo["p95"])
        interpolated = lo["cost_per_1000_images"] + share * (hi["cost_per_1000_images"] - lo["cost_per_1000_images"])
    return {
        "peer_p95": p95, "peer_cost_per_1000_images": cost,
        "best_run_target": best.get("target") if best else None, "best_run_p95": best["p95"] if best else None,
        "best_run_cost_per_1000_images": best["cost_per_1000_images"] if best else None,
        "best_run_cost_over_peer": round(best["cost_per_1000_images"] / cost, 4) if best else None,
        "interpolated_cost_per_1000_images": round(interpolated, 4) if interpolated is not None else None,
        "interpolated_cost_over_peer": round(interpolated / cost, 4) if interpolated is not None else None,
        "at_least_20_percent_cheaper": bool(best and best["cost_per_1000_images"] <= 0.8 * cost),
    }


def ratios(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    def ratio(key: str) -> float | None:
        return round(a[key] / b[key], 4) if a.get(key) and b.get(key) else None
    return {k: ratio(k) for k in ("cost_per_1000_images", "p50", "p95", "p99")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6.0, help="simulated hours carrying one day's shape")
    parser.add_argument("--peak-rps", type=float, default=2.0, help="requests per second at the day's peak")
    parser.add_argument("--target", type=float, default=30.0, help="latencyTarget.p95Seconds of the pool")
    parser.add_argument("--restricted", type=float, default=0.10, help="share of requests allowing only H100/A100")
    parser.add_argument("--bursts", type=int, default=5, help="bursts in the day")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sweep", default="8,9,10,12,15,20",
                        help="more runs of ours at these latency targets (cost against p95); empty: none")
    parser.add_argument("--hpa-sweep", default="0.8,0.9",
                        help="more runs of the HPA-like peer at these utilisation targets (its own latency knob); "
                        "empty: none")
    parser.add_argument("--no-min0", action="store_true", help="skip ours with minReplicas 0 (but the H100)")
    parser.add_argument("--no-matched", action="store_true", help="skip ours at the HPA's p95")
    parser.add_argument("--no-hpa-routed", action="store_true",
                        help="skip the HPA-like autoscaler behind the target-aware routing")
    parser.add_argument("--out", type=Path, help="JSON result (default benchmarks/results/DATE-sim-autoscaling.json)")
    parser.add_argument("--smoke", action="store_true", help="CI check that the script runs: 20 simulated minutes")
    args = parser.parse_args()
    if args.smoke:
        args.hours, args.peak_rps, args.bursts, args.sweep, args.hpa_sweep = 1 / 3, 1.0, 1, "15", "0.9"
    if args.hours <= 0 or args.peak_rps <= 0 or args.target <= 0 or not 0 <= args.restricted <= 1:
        parser.error("--hours, --peak-rps and --target must be positive, --restricted within 0..1")

    started = time.monotonic()
    seconds = args.hours * 3600
    requests, spans = make_trace(args.seed, seconds, args.peak_rps, args.restricted, args.bursts)
    delay_rng = random.Random(args.seed * 7 + 4)
    startup_delays = [delay_rng.uniform(*STARTUP) for _ in range(10_000)]
    start = dict(MIN_REPLICAS)
    print(f"{len(requests)} requests over {seconds / 3600:g} simulated hours, {len(spans)} bursts; "
          f"target p95 {args.target:g} s", flush=True)

    def simulate(name: str, begin: dict[str, int], controller: Callable[[Simulation, float], None],
                 target: float | None = None, routing_target: float | None = None) -> dict[str, Any]:
        """One policy's figures; minutes over the pool's target, and over its own `target` if given.
        The gateway routes with `routing_target` as its latency target (None: today's default)."""
        sim = Simulation(name, requests, seconds, begin, startup_delays, controller,
                         scheduler=gateway_scheduler(routing_target, args.seed))
        sim.run()
        result = figures(sim, args.target, seconds)
        if target is not None:
            result["target"] = target
            result["rolling_p95_minutes_over_own_target"] = minutes_over(sim, target, seconds)[0]
        print(_row(name, result), flush=True)
        return result

    def ours(target: float, mins: dict[str, int] = start) -> Ours:
        return Ours(Autoscaler(ours_policy(target, mins), started_at=0.0))

    policies: dict[str, dict[str, Any]] = {}
    print(HEADER)
    policies["fixed"] = simulate("fixed", dict(FIXED), fixed_controller)
    policies["hpa"] = simulate("hpa", start, Hpa())
    policies["ours"] = simulate("ours", start, ours(args.target), args.target, routing_target=args.target)
    if not args.no_hpa_routed:
        policies["hpa-target-routing"] = simulate("hpa-target-routing", start, Hpa(), routing_target=args.target)
    if not args.no_min0:
        policies["ours-min0"] = simulate("ours-min0", MIN0, ours(args.target, MIN0), args.target,
                                         routing_target=args.target)
    matched_target = None
    if not args.no_matched and policies["hpa"]["p95"]:
        matched_target = math.floor(policies["hpa"]["p95"] * 10) / 10
        if matched_target > 0:
            policies["ours-at-hpa-p95"] = simulate("ours-at-hpa-p95", start, ours(matched_target), matched_target,
                                                   routing_target=matched_target)
    sweep = {}
    for target in [float(x) for x in args.sweep.split(",") if x.strip()]:
        sweep[f"{target:g}"] = simulate(f"ours, target {target:g} s", start, ours(target), target,
                                        routing_target=target)
    # The HPA tuned too: its utilisation target is its latency knob, as the p95 target is ours.
    hpa_sweep = {}
    for utilisation in [float(x) for x in args.hpa_sweep.split(",") if x.strip()]:
        hpa_sweep[f"{utilisation:g}"] = simulate(f"hpa, target {utilisation:.0%} busy", start, Hpa(target=utilisation))
    summary = {f"{name}_over_hpa": ratios(result, policies["hpa"]) for name, result in policies.items()
               if name.startswith("ours")}
    mine, hpa = policies["ours"], policies["hpa"]
    cheaper = 1 - (summary["ours_over_hpa"]["cost_per_1000_images"] or 1)
    ours_runs = [r for name, r in policies.items() if name in ("ours", "ours-at-hpa-p95")] + list(sweep.values())
    goal = {"cheaper_than_hpa": round(cheaper, 4), "at_least_20_percent_cheaper": cheaper >= 0.20,
            "p95_equal_or_better": (mine["p95"] or math.inf) <= (hpa["p95"] or 0),
            "p95_within_target": (mine["p95"] or math.inf) <= args.target, "nothing_lost": mine["lost"] == 0,
            "at_hpa_p95": at_p95(ours_runs, hpa),
            # Each tuned HPA against ours' cheapest run with an equal or better p95 (tuned both ways).
            "at_each_hpa_p95": {utilisation: at_p95(ours_runs, run)
                                for utilisation, run in [(f"{HPA_TARGET:g}", hpa), *hpa_sweep.items()]}}
    result = {
        "simulation": "discrete-event, simulated clock, seeded: deterministic for the same arguments",
        "seed": args.seed, "simulated_hours": args.hours, "day_hours_per_simulated_hour": 24 / args.hours,
        "peak_rps": args.peak_rps, "target_p95_seconds": args.target, "restricted_share": args.restricted,
        "restricted_to": list(RESTRICTED), "requests": len(requests),
        "bursts": [{"start_s": round(a, 1), "end_s": round(b, 1), "factor": round(f, 2)} for a, b, f in spans],
        "pool": {gpu: {"seconds_per_step": round(seconds_per_step(gpu), 4), "price_per_hour": PRICES[gpu],
                       "min_replicas": MIN_REPLICAS[gpu], "max_replicas": MAX_REPLICAS[gpu], "fixed": FIXED[gpu]}
                 for gpu in GPUS},
        "startup_seconds": list(STARTUP), "sync_seconds": SYNC_SECONDS,
        "gateway": {"backlog_seconds": BACKLOG_SECONDS, "queue_size": QUEUE_SIZE, "queue_deadline": QUEUE_DEADLINE},
        "hpa": {"target_utilisation": HPA_TARGET, "tolerance": HPA_TOLERANCE, "window_seconds": WINDOW_SECONDS,
                "scale_down_stabilisation_seconds": HPA_DOWN_WINDOW},
        "matched_target": matched_target,
        "policies": policies, "summary": summary, "ours_target_sweep": sweep, "hpa_utilisation_sweep": hpa_sweep,
        "goal": goal,
        "wall_seconds": round(time.monotonic() - started, 2),
    }
    print()
    for name, r in summary.items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in r.items()))
    print("goal:", goal)
    out = args.out or RESULTS / f"{time.strftime('%Y-%m-%d')}-sim-autoscaling.json"
    write_report(out, **result)
    print(f"\nwrote {out} in {result['wall_seconds']} s")
    return 0


HEADER = ("| policy | images | $ / 1000 images | p50 s | p95 s | p99 s | minutes rolling p95 > target | lost "
          "| replica changes | workers started | mean ready workers |\n|---|---|---|---|---|---|---|---|---|---|---|")


def _row(name: str, r: dict[str, Any]) -> str:
    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"
    return (f"| {name} | {r['images']} | {num(r['cost_per_1000_images'])} | {num(r['p50'])} | {num(r['p95'])} "
            f"| {num(r['p99'])} | {r['rolling_p95_minutes_over_target']} of {r['minutes']} | {r['lost']} "
            f"| {r['replica_changes']} | {r['workers_started']} | {r['mean_ready_workers']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
