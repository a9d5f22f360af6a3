"""The data routing plugins exchange. Pure: no I/O, the clock is passed in as `now`.

    RouteRequest  what is being placed: cost, allowed GPU models, backends already tried, now
    Candidate     one backend as the plugins see it during one run (a snapshot at `now`)
    Scored        a candidate and its weighted total, what the picker chooses from
    Decision      the outcome: the chosen backend state (or None and why), its expected
                  completion time, and every plugin's scores
    Explanation   only when asked for (`schedule(..., explain=True)`): the candidates left after
                  each filter, the weights and the picker, for `Decision.explained()`
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sdxlpool.gateway.backends import Backend, BackendState
from sdxlpool.gateway.worker_metrics import WorkerMetrics

__all__ = ["RouteRequest", "Candidate", "Scored", "Decision", "Explanation", "FilterStep"]


@dataclass(frozen=True)
class RouteRequest:
    cost: float  # normalised steps of this request (GenerationParams.normalised_steps)
    allowed_gpus: tuple[str, ...] = ()  # GPU model slugs, preferred first; empty: any model
    exclude: frozenset[str] = frozenset()  # names of backends already tried for this request
    now: float = 0.0  # seconds, on the clock of BackendState.scraped_at and dispatch times
    loras: frozenset[str] = frozenset()  # LoRA names (or aliases) the prompt calls, <lora:name:w>

    def __post_init__(self) -> None:
        if not math.isfinite(self.cost) or self.cost < 0:
            raise ValueError(f"cost: must be a finite number >= 0, got {self.cost!r}")
        if isinstance(self.allowed_gpus, str):
            raise ValueError("allowed_gpus: a tuple of GPU model names, not one string")


@dataclass(frozen=True)
class Candidate:
    """One backend during one scheduling run: its state and what it looked like at `now`."""

    state: BackendState
    metrics: WorkerMetrics | None  # the last scrape (None: never scraped, or type a1111)
    scrape_age: float | None  # seconds since that scrape was sent; None: never scraped
    unseen_steps: float  # gateway-dispatched work that metrics cannot show yet (BackendState.unseen_cost)
    available: bool  # circuit breaker lets requests through (BackendState.available)

    @classmethod
    def of(cls, state: BackendState, now: float) -> Candidate:
        return cls(
            state=state,
            metrics=state.metrics,
            scrape_age=None if state.scraped_at is None else max(0.0, now - state.scraped_at),
            unseen_steps=state.unseen_cost(now),
            available=state.available(now),
        )

    @property
    def backend(self) -> Backend:
        return self.state.backend

    @property
    def name(self) -> str:
        return self.state.backend.name

    @property
    def pending_steps(self) -> float:
        """Work queued on the worker at the last scrape (0 without metrics)."""
        return self.metrics.pending_steps if self.metrics is not None else 0.0

    @property
    def batch_max(self) -> int:
        """Queued same-shape requests the worker runs as one batch (`sdxl_worker_batch_max`); 1 without
        metrics (a1111, never scraped) or from a worker that does not export it."""
        return self.metrics.batch_max if self.metrics is not None else 1

    @property
    def step_seconds(self) -> float | None:
        """The worker's measured seconds per normalised step; None when not measured or unknown."""
        if self.metrics is None or self.metrics.step_seconds <= 0:
            return None
        return self.metrics.step_seconds


@dataclass(frozen=True)
class Scored:
    candidate: Candidate
    score: float  # sum over scorers of weight x clamped score


@dataclass(frozen=True)
class FilterStep:
    filter: str  # the filter's name
    kept: tuple[str, ...]  # the backends it left, by name (empty: it ended the run)


@dataclass(frozen=True)
class Explanation:
    """How a run went, beyond what every `Decision` carries: built only when asked for."""

    candidates: tuple[str, ...]  # every backend, before the filters
    filters: tuple[FilterStep, ...]  # the filters that ran, in order
    weights: Mapping[str, float] = field(default_factory=dict)  # scorer -> weight (empty: not reached)
    picker: str = ""


@dataclass(frozen=True)
class Decision:
    state: BackendState | None  # the chosen backend; None: nothing could serve (see `reason`)
    expected_seconds: float | None = None  # expected completion on the chosen backend
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # scorer -> backend -> [0, 1]
    totals: Mapping[str, float] = field(default_factory=dict)  # backend -> weighted sum
    reason: str = ""  # why nothing was chosen
    emptied_by: str | None = None  # the filter that left no candidate
    gpu_models: tuple[str, ...] = ()  # GPU models tried (display names), for the 503 message
    explanation: Explanation | None = None  # only with `schedule(..., explain=True)` or DEBUG logging

    def explained(self) -> dict[str, Any] | None:
        """The whole decision as a JSON-ready dict (None when it was not explained): the candidates
        after each filter, the filter that emptied the set, every score per scorer, the weights,
        the weighted totals and the pick."""
        why = self.explanation
        if why is None:
            return None
        return {
            "candidates": list(why.candidates),
            "filters": [{"filter": step.filter, "kept": list(step.kept)} for step in why.filters],
            "emptied_by": self.emptied_by,
            "scores": {scorer: {name: round(value, 6) for name, value in by_backend.items()}
                       for scorer, by_backend in self.scores.items()},
            "weights": dict(why.weights),
            "totals": {name: round(value, 6) for name, value in self.totals.items()},
            "picker": why.picker,
            "picked": self.state.backend.name if self.state is not None else None,
            "expected_seconds": None if self.expected_seconds is None else round(self.expected_seconds, 4),
            "reason": self.reason or None,
        }
