"""Expected completion time and pool drain rate: the arithmetic shared by scorers and the gateway.

    expected completion = (pending_steps + unseen_steps + cost) x step_seconds

`pending_steps` is the worker's last scraped backlog, `unseen_steps` what the gateway sent since
(`BackendState.unseen_cost`), `cost` the request's normalised steps. A backend whose
`step_seconds` is unknown (0: the worker has not finished a job yet; or a plain A1111 server)
gets a fallback: the median measured step time of the candidates with the same GPU model, else of
all candidates, else `DEFAULT_STEP_SECONDS`. So a new L40S worker is assumed as fast as the L40S
workers already measured, and an unmeasured pool is treated as uniform.

`extra_wait_seconds` is the part of the wait the `completion_time` scorer counts extra (its
`waitWeight`): the wait beyond a slack, less what a batching worker's queue gives back.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence

from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.routing.types import Candidate

__all__ = [
    "DEFAULT_STEP_SECONDS",
    "fallback_step_seconds",
    "candidate_completion_seconds",
    "candidate_wait_and_service_seconds",
    "expected_completion_seconds",
    "extra_wait_seconds",
    "pool_drain_rate",
]

# About an H100's SDXL speed with the refiner (docs/benchmarks.md measured 0.087 s per normalised
# step); used only when no candidate has measured itself.
DEFAULT_STEP_SECONDS = 0.1


def fallback_step_seconds(gpu: str, candidates: Iterable[Candidate], default: float = DEFAULT_STEP_SECONDS) -> float:
    """Step time assumed for an unmeasured backend of GPU model `gpu` among `candidates`."""
    same: list[float] = []
    measured: list[float] = []
    for candidate in candidates:
        seconds = candidate.step_seconds
        if seconds is not None:
            measured.append(seconds)
            if candidate.backend.gpu == gpu:
                same.append(seconds)
    if same:
        return statistics.median(same)
    return statistics.median(measured) if measured else default


def candidate_completion_seconds(candidate: Candidate, cost: float, peers: Sequence[Candidate],
                                 default_step_seconds: float = DEFAULT_STEP_SECONDS) -> float:
    """Expected completion of `cost` more steps on `candidate`; `peers` supply the fallback speed."""
    wait, service = candidate_wait_and_service_seconds(candidate, cost, peers, default_step_seconds)
    return wait + service


def candidate_wait_and_service_seconds(candidate: Candidate, cost: float, peers: Sequence[Candidate],
                                       default_step_seconds: float = DEFAULT_STEP_SECONDS) -> tuple[float, float]:
    """The expected completion in its two parts: waiting for the work ahead, then `cost` steps of service."""
    seconds = candidate.step_seconds
    if seconds is None:
        seconds = fallback_step_seconds(candidate.backend.gpu, peers, default_step_seconds)
    return (candidate.pending_steps + candidate.unseen_steps) * seconds, cost * seconds


def extra_wait_seconds(wait: float, service: float, *, slack: float, batch_max: int = 1) -> float:
    """The part of one candidate's `wait` that the `completion_time` scorer counts `waitWeight` times.

    `wait` and `service` are the candidate's (`candidate_wait_and_service_seconds`), `slack` the
    wait that is free anyway (the scorer's one short job), `batch_max` the worker's
    `sdxl_worker_batch_max` (`Candidate.batch_max`: 1 when it does not say).

        extra = max(0, wait - slack - (batch_max - 1) x service)

    Why a wait counts extra at all: a request that joins a queue delays every request that joins
    it after it. On a worker that batches (`--batch-max` B > 1) a queue is partly free: up to B - 1
    requests waiting there run in the same batch as this one, so they are not in front of it, and
    it is not in front of the requests that join that batch after it (a bigger batch takes only a
    little longer per image, and the worker's `step_seconds`, measured per image at the batch size
    it ran, already prices that into `wait` and `service`). `wait` counts those requests one after
    another, at this request's size: up to (B - 1) x `service` of it is the batch the request will
    run in, not a queue, so it is free like the slack. With B = 1 this is the plain
    `max(0, wait - slack)`: workers that do not batch, or do not say, are priced as before.

    Deliberately simple. It assumes the requests ahead have this request's shape (the worker
    batches only equal sizes and steps), which is exact for one shape and optimistic for a mix, and
    it also frees a running batch's rest, which no new request can join. In the routing model
    (docs/benchmarks.md, "Batching workers: the wait per batch") the variants tried (dividing the
    wait by B; freeing only the requests still queued) won 0.01-0.03 s of median and sent some
    requests to the slow workers again (p99 1.20 s instead of 0.84 s at 80 % load).
    """
    shared = (max(1, batch_max) - 1) * service
    return max(0.0, wait - slack - shared)


def expected_completion_seconds(state: BackendState, cost: float, now: float, *,
                                pool: Iterable[BackendState] = (),
                                default_step_seconds: float = DEFAULT_STEP_SECONDS) -> float:
    """Seconds until a request of `cost` normalised steps sent to `state` now would be done.

    For response headers and Retry-After. `pool` (other backends, optional) supplies the fallback
    step time when this backend has not measured its own.
    """
    peers = [Candidate.of(s, now) for s in pool]
    return candidate_completion_seconds(Candidate.of(state, now), cost, peers, default_step_seconds)


def pool_drain_rate(states: Iterable[BackendState], now: float | None = None, *,
                    default_step_seconds: float = DEFAULT_STEP_SECONDS) -> float:
    """Normalised steps per second the pool works off: the sum of 1 / step_seconds.

    Counts backends that can take work: ready sdxlpool workers and a1111 servers, and, when `now`
    is given, only those whose circuit breaker is not open. Unknown step times use the fallback
    above. 0.0 when nothing can take work. Retry-After = backlog / this rate.
    """
    at = 0.0 if now is None else now
    candidates = [Candidate.of(s, at) for s in states]
    up = [c for c in candidates if (now is None or c.available)
          and (c.backend.kind == "a1111" or (c.metrics is not None and c.metrics.ready))]
    rate = 0.0
    for candidate in up:
        seconds = candidate.step_seconds
        if seconds is None:
            seconds = fallback_step_seconds(candidate.backend.gpu, up, default_step_seconds)
        rate += 1.0 / seconds if seconds > 0 else 0.0
    return rate
