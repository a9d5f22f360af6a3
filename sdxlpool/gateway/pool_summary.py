"""The pool per GPU model, as the web page shows it: `GET /v1/pool`.

    {"gpu_model": "a100", "gpu_name": "A100", "workers": 2, "up": 1, "busy": 1, "pricePerHour": 1.1}

* `workers`: backends of that model in the pool, up or not (0 for a model of `--pool-gpus` with none:
  a request for it waits while one starts);
* `up`: those that can take a request now: circuit closed (`BackendState.available`), and seen
  alive within `stale_after` seconds (sdxlpool workers: a scrape with the model loaded; plain
  A1111 servers: their progress probe answered);
* `busy`: up workers with work in flight or queued (the worker's own gauges, or what this gateway
  has sent it);
* `pricePerHour`: the lowest price configured among that model's backends; None when none has one.

Pure: a function of the states and `now` (the monotonic clock the gateway's loops use), no I/O.
Models come in order of their display name, so the page's toggles keep their places.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sdxlpool.api.gpu import display_name
from sdxlpool.gateway.backends import BackendState

__all__ = ["GpuModelSummary", "summarise_pool", "is_up", "is_busy"]


@dataclass(frozen=True)
class GpuModelSummary:
    gpu_model: str  # canonical slug, what a request's `gpus` names
    gpu_name: str  # display name
    workers: int
    up: int
    busy: int
    price_per_hour: float | None

    def as_json(self) -> dict[str, Any]:
        return {"gpu_model": self.gpu_model, "gpu_name": self.gpu_name, "workers": self.workers, "up": self.up,
                "busy": self.busy, "pricePerHour": self.price_per_hour}


def is_up(state: BackendState, now: float, stale_after: float) -> bool:
    """Can take a request now: circuit closed, and seen alive (and loaded) within `stale_after`."""
    if not state.available(now) or state.scraped_at is None or now - state.scraped_at > stale_after:
        return False
    if state.backend.kind == "a1111":
        return True
    return state.metrics is not None and state.metrics.ready


def is_busy(state: BackendState) -> bool:
    """Work in flight or queued on the worker, by its last scrape or by this gateway's own count."""
    metrics = state.metrics
    reported = metrics is not None and state.backend.kind == "sdxlpool" and (
        metrics.inflight > 0 or metrics.queue_depth > 0)
    return reported or state.inflight > 0


def summarise_pool(states: Iterable[BackendState], now: float, *, stale_after: float,
                   pool_gpus: Iterable[str] = ()) -> list[GpuModelSummary]:
    """Per GPU model of `states`, and of `pool_gpus` (the pool's models, `--pool-gpus`: listed with
    0 workers while none runs, so a request can still ask for one and wait for it to start)."""
    groups: dict[str, list[BackendState]] = {gpu: [] for gpu in pool_gpus}
    for state in states:
        groups.setdefault(state.backend.gpu, []).append(state)
    summaries = []
    for gpu, members in groups.items():
        up = [s for s in members if is_up(s, now, stale_after)]
        prices = [s.backend.price_per_hour for s in members if s.backend.price_per_hour is not None]
        summaries.append(GpuModelSummary(
            gpu_model=gpu,
            gpu_name=_display(members[0]) if members else _display_slug(gpu),
            workers=len(members),
            up=len(up),
            busy=sum(1 for s in up if is_busy(s)),
            price_per_hour=min(prices) if prices else None,
        ))
    return sorted(summaries, key=lambda s: (s.gpu_name.lower(), s.gpu_model))


def _display_slug(gpu: str) -> str:
    try:
        return display_name(gpu)
    except ValueError:
        return gpu


def _display(state: BackendState) -> str:
    try:
        return state.backend.gpu_display
    except ValueError:  # a slug the parser no longer knows: show it as it is
        return state.backend.gpu
