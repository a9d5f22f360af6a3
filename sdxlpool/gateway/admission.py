"""Admission: who may enter, and what waits, before routing.

* Rate limit: a token bucket per client (its address, or its API key's name when keys are
  configured, with the key's own rate if it has one), `rate_limit_per_minute` with `burst`.
  Over it -> 429 `rate_limited`, Retry-After = time until the bucket has a token again.
* Saturation: a worker "has room" while its queued work would finish within `backlog_seconds`
  (pending + what the gateway sent since the last scrape, times its step time), unless it has
  refused a request for a full queue (its own `--max-queue`) since its last scrape. When no allowed
  worker has room, the request waits in a bounded gateway queue for up to `queue_deadline`;
  when that queue is full, or the deadline passes -> 429 `saturated`, Retry-After = the allowed
  workers' backlog divided by their drain rate (normalised steps the pool works off per second).
  Waiters leave by priority (API keys'), then in order of arrival.
* Scale from zero (like Knative's activator): a request none of whose allowed GPU models has a
  ready worker, but which allows a model of the pool (`pool_gpus`, `--pool-gpus`; for "any
  model", every model of the pool), waits in the same bounded queue while the autoscaler starts
  a worker, for up to `cold_start_deadline`, and goes on as soon as one of its models has a ready
  worker (its saturation deadline starts then). Until then it takes no room from anyone. Its
  waiter is told once (`on_starting`: the models it waits for, seconds waited), the streaming
  client sees a `starting` event; past the deadline -> 503 `no_worker_started`. A request for
  models outside the pool with no worker up still gets routing's immediate 503 `no_backend`.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sdxlpool.api.gpu import display_name
from sdxlpool.errors import RequestError
from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.demand import DemandTracker, is_ready
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.routing import allowed_rank, expected_completion_seconds, pool_drain_rate

__all__ = ["TooBusy", "NoWorkerStarted", "TokenBucket", "RateLimiter", "Admission", "OnStarting"]

_MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client is forgotten first
_POLL_SECONDS = 0.05


class TooBusy(RequestError):
    status = 429

    def __init__(self, code: str, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.code = code
        self.retry_after = max(1, math.ceil(retry_after))


class NoWorkerStarted(RequestError):
    """A request waited for a worker of a GPU model with none ready (scale from zero), and none
    became ready within the cold-start deadline."""

    status = 503
    code = "no_worker_started"

    def __init__(self, gpu_models: tuple[str, ...], waited: float) -> None:
        names = ", ".join(display_name(gpu) for gpu in gpu_models)
        super().__init__(f"no worker of {names} became ready within {waited:.0f}s (waited for one to start: "
                         "is the pool's autoscaling enabled with room for that model?)")
        self.gpu_models = gpu_models


OnStarting = Callable[[tuple[str, ...], float], None]
"""Told once when a request starts waiting for a worker to start: its GPU models, seconds waited so far."""


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float) -> float:
        """Take a token: 0.0 when granted, else the seconds until one will be there."""
        if self.tokens < 0:
            self.tokens, self.updated = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, per_minute: float, burst: int) -> None:
        self.rate, self.burst = per_minute / 60.0, float(burst)
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, client: str, now: float, *, per_minute: float | None = None, burst: int | None = None) -> None:
        """Take one request from `client`'s bucket; `per_minute`/`burst` override the defaults (API keys)."""
        rate = self.rate if per_minute is None else per_minute / 60.0
        if rate <= 0:
            return
        capacity = self.burst if burst is None else float(burst)
        bucket = self._buckets.pop(client, None) or TokenBucket(rate, capacity)
        bucket.rate, bucket.burst = rate, capacity  # a reloaded key file may have changed them
        self._buckets[client] = bucket
        if len(self._buckets) > _MAX_CLIENTS:
            self._buckets.popitem(last=False)
        wait = bucket.take(now)
        if wait > 0:
            raise TooBusy("rate_limited", f"rate limit of {rate * 60:g} requests per minute exceeded", wait)


@dataclass(frozen=True, order=True)
class _Ticket:
    rank: tuple[int, int]  # (-priority, arrival number): the smallest goes first
    allowed: tuple[str, ...] = field(compare=False)


class Admission:
    """The saturated pool's waiting room. Order: higher priority first, then first come, first
    served, among waiters whose GPU models have room (a waiter for a busy model never blocks one
    for an idle model). A newcomer goes straight through only when nobody it would overtake waits."""

    def __init__(self, pool: BackendPool, *, backlog_seconds: float, queue_size: int, queue_deadline: float,
                 demand: DemandTracker | None = None, pool_gpus: Iterable[str] = (),
                 cold_start_deadline: float = 600.0) -> None:
        self.pool = pool
        self.demand = demand  # told who waits, for the autoscaler
        self.pool_gpus = tuple(pool_gpus)
        self.cold_start_deadline = cold_start_deadline
        self.backlog_seconds = backlog_seconds
        self.queue_size = queue_size
        self.queue_deadline = queue_deadline
        self._waiters: list[_Ticket] = []
        self._arrivals = itertools.count()
        self._room: dict[tuple[str, ...], bool] = {}  # has_room per GPU choice, for one poll tick
        self._room_tick = -1

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _allowed(self, allowed: tuple[str, ...], now: float) -> list[BackendState]:
        return [s for s in self.pool.states()
                if s.available(now) and allowed_rank(allowed, s.backend.gpu) is not None]

    def cold_models(self, allowed: tuple[str, ...], now: float) -> tuple[str, ...]:
        """The pool's GPU models a request allowing `allowed` waits for: none of its allowed models
        has a ready worker, and these are the pool's models among them. () when a worker is ready,
        or when it allows none of the pool's models (routing answers that one)."""
        if not self.pool_gpus:
            return ()
        if any(is_ready(s, now) for s in self.pool.states() if allowed_rank(allowed, s.backend.gpu) is not None):
            return ()
        return tuple(gpu for gpu in self.pool_gpus if allowed_rank(allowed, gpu) is not None)

    def has_room(self, allowed: tuple[str, ...], now: float) -> bool:
        if self.cold_models(allowed, now):
            return False  # waiting for a worker to start: no room to take yet
        states = self._allowed(allowed, now)
        return not states or any(  # none at all: let routing answer 503 with the reason
            not s.known_full() and expected_completion_seconds(s, 0.0, now, pool=states) < self.backlog_seconds
            for s in states)

    def retry_after(self, allowed: tuple[str, ...], now: float) -> float:
        states = self._allowed(allowed, now)
        backlog = sum((s.metrics.pending_steps if s.metrics else 0.0) + s.unseen_cost(now) for s in states)
        rate = pool_drain_rate(states, now)
        return backlog / rate if rate > 0 else self.queue_deadline

    async def admit(self, allowed: tuple[str, ...], priority: int = 0, cost: float = 0.0,
                    on_starting: OnStarting | None = None) -> float:
        """Wait for room (or for a worker to start); returns the seconds waited. TooBusy when the
        queue is full or time runs out; NoWorkerStarted when no worker started in time."""
        started = time.monotonic()
        ticket = _Ticket((-priority, next(self._arrivals)), allowed)
        if self._may_go(ticket, started):
            return 0.0
        if self.waiting >= self.queue_size:
            raise TooBusy("saturated", f"every allowed worker is busy and {self.waiting} requests are waiting",
                          self.retry_after(allowed, started))
        bisect.insort(self._waiters, ticket)
        waiting = self.demand.wait(allowed, cost, started) if self.demand is not None else None
        announced = False
        warm_since = started  # the saturation deadline counts from when a worker of its models is ready
        try:
            while True:
                now = time.monotonic()
                cold = self.cold_models(allowed, now)
                if cold:
                    if not announced and on_starting is not None:
                        on_starting(cold, now - started)
                    announced = True
                    if now - started >= self.cold_start_deadline:
                        raise NoWorkerStarted(cold, now - started)
                    warm_since = now
                elif self._may_go(ticket, now):
                    return now - started
                elif now - warm_since >= self.queue_deadline:
                    raise TooBusy("saturated", f"no allowed worker had room within {self.queue_deadline:g}s",
                                  self.retry_after(allowed, now))
                await asyncio.sleep(_POLL_SECONDS)
        finally:
            if ticket in self._waiters:
                self._waiters.remove(ticket)
            if waiting is not None and self.demand is not None:
                self.demand.done_waiting(waiting)

    def _may_go(self, ticket: _Ticket, now: float) -> bool:
        """Room for `ticket`'s GPU models, and no waiter ranked ahead of it that could take that room."""
        if not self._has_room_now(ticket.allowed, now):
            return False
        for other in self._waiters:
            if other.rank >= ticket.rank:
                break
            if self._has_room_now(other.allowed, now):
                return False
        self._room.clear()  # this one takes room: the next to ask must look again
        return True

    def _has_room_now(self, allowed: tuple[str, ...], now: float) -> bool:
        tick = int(now / _POLL_SECONDS)
        if tick != self._room_tick:
            self._room, self._room_tick = {}, tick
        if allowed not in self._room:
            self._room[allowed] = self.has_room(allowed, now)
        return self._room[allowed]
