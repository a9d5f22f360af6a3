"""Send one request to the pool: pick a worker, watch it, and fail over without losing the request.

`forward(kind, body, ...)` sends any kind of request (kinds.py: txt2img, img2img, the extras,
png-info) to the worker route `kind.path`, the same way. Its steps:

  1. a generation (txt2img, img2img) gets its seed fixed: `seed: -1` becomes a concrete number
     *before* the first attempt, so a retry on another worker makes the image the first would have
     (workers draw noise on the CPU; an img2img's init image travels unchanged with every attempt)
  2. per attempt (at most `max_attempts`, never the same worker twice):
     2a. ask the scheduler for the best worker not tried yet among the allowed GPU models
     2b. count the request against that worker at once (a burst between two scrapes spreads out),
         and tell `on_dispatch` (the service announces it to the other gateway replicas, peers.py)
     2c. send it, while a watchdog polls the worker's /progress: no progress for
         `progress_deadline` seconds means a hung worker, and the attempt is abandoned (the
         worker is interrupted in the background, the failover does not wait for it). Extras and
         png-info run no denoising steps, so nothing on /progress would move: they are bounded by
         `attempt_timeout` alone
     2d. success -> done; the client's own error (4xx) -> answered as is; refused, reset, 5xx,
         timeout or hang -> mark the worker down (circuit breaker) and try the next one; a full
         worker queue (503 queue_full) -> try the next one, and when every worker tried was
         full, `WorkersFull` (the service answers 429 with Retry-After)
  3. a client that goes away cancels the attempt (closing the connection stops an sdxlpool
     worker's job) and interrupts a plain A1111 server

The loop talks to workers only through a `WorkerTransport` (transport.py): the real one is HTTP, a
test's is in memory. Each abandoned attempt becomes an `AttemptFailure` record (attempts.py) in
`Forwarded.failures`. Each attempt of a generation is named with A1111's `force_task_id`
(`sdxlpool-<request>-<attempt>`; a client's own id is the gateway's to keep, `caller_tasks.py`),
and `on_attempt` hears each `AttemptStarted` (which worker runs which name: the per-caller
/progress, interrupt and skip). With a `listener` (the WebSocket and streaming API), the attempts
are reported to it too, and the watchdog polls more often and reports the steps of *that* job (the
worker's /progress names the running job) as `ProgressSeen`; `events.stream_listener` turns those
into the wire events. With `explain_routing`, every attempt's scheduler decision is kept,
explained, in `Forwarded.routing` (or on the error raised).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sdxlpool.api.generation import MAX_SEED
from sdxlpool.errors import RequestError, UpstreamError
from sdxlpool.gateway.attempts import (
    AttemptFailed,
    AttemptFailure,
    AttemptStarted,
    FailureKind,
    ForwardListener,
    ProgressSeen,
)
from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.kinds import RequestKind
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.routing import Decision, RouteRequest, Scheduler
from sdxlpool.gateway.transport import TransportFailure, TransportTimeout, WorkerTransport

__all__ = ["Forwarded", "ForwardError", "NoBackend", "AllAttemptsFailed", "WorkersFull", "forward",
           "fix_seeds", "exhausted", "RoutingTrace"]

log = logging.getLogger(__name__)

RoutingTrace = list[dict[str, Any]]  # the explained decision of each attempt, in order


class ForwardError(RequestError):
    """A request the pool could not serve. `routing` holds each attempt's explained scheduler
    decision when the caller asked for them (`X-SDXL-Debug-Routing`), else None."""

    def __init__(self, detail: str, *, routing: RoutingTrace | None = None) -> None:
        super().__init__(detail)
        self.routing = routing


class NoBackend(ForwardError):
    """No worker of the allowed GPU models is up (503)."""

    status = 503
    code = "no_backend"


class AllAttemptsFailed(ForwardError):
    """Every worker tried failed (502): the request was not lost silently, it failed loudly."""

    status = 502
    code = "all_attempts_failed"


class WorkersFull(ForwardError):
    """Every worker tried refused the request for a full queue (`--max-queue`): the service
    answers it as saturation, 429 with Retry-After, not as a failure."""

    status = 429
    code = "saturated"


class _AttemptFailed(UpstreamError):
    def __init__(self, kind: FailureKind, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass
class Forwarded:
    """The worker's answer: its status and body bytes as received (a success is not decoded on
    the way, see passthrough.py), where it ran and how it got there."""

    status_code: int
    content: bytes
    state: BackendState | None
    attempts: int
    failures: list[AttemptFailure] = field(default_factory=list)
    queue_seconds: float = 0.0
    routing: RoutingTrace | None = None  # with `explain_routing`: each attempt's explained decision
    _body: Any = field(default=None, repr=False)

    @property
    def body(self) -> Any:
        """The answer decoded (once, on first use)."""
        if self._body is None:
            self._body = json.loads(self.content)
        return self._body


def fix_seeds(body: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
    """Resolve -1 seeds here, once, so every attempt asks for the same image."""
    rng = rng or random.Random()
    fixed = dict(body)
    for key in ("seed", "subseed"):
        value = fixed.get(key, -1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            fixed[key] = rng.randint(0, MAX_SEED)
    return fixed


async def forward(
    kind: RequestKind,
    body: dict[str, Any],
    *,
    cost: float,
    allowed_gpus: tuple[str, ...],
    pool: BackendPool,
    scheduler: Scheduler,
    transport: WorkerTransport,
    max_attempts: int,
    attempt_timeout: float,
    progress_deadline: float,
    listener: ForwardListener | None = None,
    progress_poll: float = 0.25,
    explain_routing: bool = False,
    headers: Mapping[str, str] | None = None,  # sent with each attempt (X-SDXL-Strict)
    loras: frozenset[str] = frozenset(),
    on_attempt: Callable[[AttemptStarted], None] | None = None,
    on_dispatch: Callable[[BackendState, float], None] | None = None,  # (state, cost), right after counting it
) -> Forwarded:
    """The worker's answer (a success, or the client's own 4xx), or `NoBackend`, `WorkersFull` or
    `AllAttemptsFailed`. `transport` reaches the workers; the steps are in the module docstring."""
    # 1. Fix the seed.
    if kind.generation:
        body = fix_seeds(body)
    request_id = uuid.uuid4().hex[:12]
    tried: set[str] = set()
    failures: list[AttemptFailure] = []
    routing: RoutingTrace | None = [] if explain_routing else None
    started = time.monotonic()
    for attempt in range(1, max_attempts + 1):
        # 2a. Choose.
        now = time.monotonic()
        decision = scheduler.schedule(
            RouteRequest(cost=cost, allowed_gpus=allowed_gpus, exclude=frozenset(tried), now=now, loras=loras),
            pool.states(),
            explain=explain_routing)
        if routing is not None:
            routing.append(_explained(attempt, decision))
        if decision.state is None:
            if failures:
                break
            raise NoBackend(decision.reason or "no backend available", routing=routing)
        state = decision.state
        tried.add(state.backend.name)
        # 2b. Count it against the worker now.
        state.dispatch(cost, now)
        if on_dispatch is not None:
            on_dispatch(state, cost)
        task_id = f"sdxlpool-{request_id}-{attempt}"  # the attempt's force_task_id: its worker's /progress names it
        if not kind.generation:  # extras and png-info run no denoising steps (nothing on /progress to watch)
            watch = _Watch(None)
        elif listener is None:
            watch = _Watch(progress_deadline, task_id=task_id)
        else:
            watch = _Watch(progress_deadline, attempt=attempt, task_id=task_id, poll=progress_poll, listener=listener)
        started_event = AttemptStarted(attempt, state, task_id)
        if on_attempt is not None:
            on_attempt(started_event)
        if listener is not None:
            listener(started_event)
        try:
            # 2c. Send and watch.
            status, content, payload = await _attempt(transport, state, kind.path, body, attempt_timeout, watch,
                                                      headers)
        except _AttemptFailed as exc:
            failure = AttemptFailure(state.backend.name, attempt, exc.kind, exc.detail, time.monotonic() - now)
            failures.append(failure)
            _record_failure(state, failure)
            log.warning("attempt %d on %s failed (%s): %s", attempt, failure.worker, failure.kind.value,
                        failure.detail)
            if listener is not None:
                listener(AttemptFailed(failure))
            continue
        finally:
            state.complete(cost)
        # 2d. Done (success, or the client's own error, which another worker would repeat).
        if status < 400:
            state.record_success(time.monotonic())
        return Forwarded(status, content, state, attempt, failures, queue_seconds=now - started, routing=routing,
                         _body=payload)
    raise exhausted(failures, routing)


def exhausted(failures: Sequence[AttemptFailure], routing: RoutingTrace | None = None) -> ForwardError:
    """The error for a request that failed on every worker tried: saturation when each of them
    only had a full queue, a failure otherwise. The detail lists every worker and why."""
    tried = "; ".join(str(failure) for failure in failures) or "none"
    if failures and all(failure.kind is FailureKind.QUEUE_FULL for failure in failures):
        return WorkersFull(f"every worker tried has a full queue ({tried})", routing=routing)
    return AllAttemptsFailed(f"the request failed on every worker tried ({tried})", routing=routing)


def _record_failure(state: BackendState, failure: AttemptFailure) -> None:
    """Circuit-breaker bookkeeping: a full queue marks the worker busy, a fault marks it down."""
    now = time.monotonic()
    if failure.kind is FailureKind.QUEUE_FULL:
        state.record_full(now)
    if failure.kind.worker_fault:
        state.record_failure(now)


def _explained(attempt: int, decision: Decision) -> dict[str, Any]:
    return {"attempt": attempt, **(decision.explained() or {})}


@dataclass(frozen=True)
class _Watch:
    """How one attempt is watched: the hang deadline, and for a listener, its job's progress."""

    deadline: float | None  # None: not watched (no progress to see), bounded by the attempt timeout only
    attempt: int = 0
    task_id: str | None = None  # sent as force_task_id, so /progress shows whether our job runs
    poll: float = 1.0
    listener: ForwardListener | None = None


async def _attempt(
    transport: WorkerTransport, state: BackendState, path: str, body: dict[str, Any], timeout: float,
    watch: _Watch, headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    """(status, body bytes, decoded body or None), or `_AttemptFailed` saying why not."""
    backend = state.backend
    if watch.task_id is not None:
        body = {**body, "force_task_id": watch.task_id}
    request = asyncio.ensure_future(transport.send(backend, path, body, timeout=timeout, headers=headers))
    watchdog: asyncio.Future[Any] = (asyncio.ensure_future(_watch_progress(transport, state, watch))
                                     if watch.deadline is not None else asyncio.get_running_loop().create_future())
    try:
        done, _ = await asyncio.wait({request, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        if request not in done:
            request.cancel()
            _in_background(transport.interrupt(backend))  # free the GPU, without making the failover wait for it
            raise _AttemptFailed(FailureKind.HUNG, f"no progress for {watch.deadline:g}s")
        try:
            status, content = request.result()
        except TransportTimeout as exc:
            raise _AttemptFailed(FailureKind.TIMEOUT, f"timed out: {exc}") from exc
        except TransportFailure as exc:
            raise _AttemptFailed(FailureKind.TRANSPORT, str(exc)) from exc
    except asyncio.CancelledError:
        # The client went away. Closing our connection makes an sdxlpool worker drop the queued job
        # or interrupt the running one (exactly ours); a plain A1111 server only knows /interrupt.
        request.cancel()
        if backend.kind == "a1111":
            await transport.interrupt(backend)
        raise
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watchdog
    return _judge_answer(status, content)


def _judge_answer(status: int, content: bytes) -> tuple[int, bytes, Any]:
    """A worker's answer as (status, body bytes, decoded body or None), or `_AttemptFailed`.

    A success is not decoded, only checked to be a JSON object (passthrough.py); errors are small
    and decoded, to tell a full queue from a broken worker from the client's own mistake.
    """
    if status < 400:
        if not (content.lstrip()[:1] == b"{" and content.rstrip()[-1:] == b"}"):
            raise _AttemptFailed(FailureKind.BAD_BODY, f"HTTP {status} with a body that is not a JSON object")
        return status, content, None
    try:
        payload = json.loads(content)
    except ValueError as exc:
        raise _AttemptFailed(FailureKind.BAD_BODY, f"HTTP {status} with a body that is not JSON") from exc
    if status == 503 and isinstance(payload, dict) and payload.get("error") == "queue_full":
        raise _AttemptFailed(FailureKind.QUEUE_FULL, "queue full")  # busy, not broken: try another
    if status >= 500:
        detail = payload.get("detail", "") if isinstance(payload, dict) else ""
        raise _AttemptFailed(FailureKind.HTTP_5XX, f"HTTP {status}: {detail}")
    return status, content, payload


async def _watch_progress(transport: WorkerTransport, backend: BackendState, watch: _Watch) -> None:
    """Return when the worker has shown no progress for `watch.deadline` seconds (it is hung).

    Meanwhile report our job's steps to `watch.listener`, each change once.
    """
    assert watch.deadline is not None
    poll = min(watch.poll, watch.deadline / 4)
    last: tuple[Any, ...] | None = None
    last_change = time.monotonic()
    reported: tuple[int, int] | None = None
    while True:
        await asyncio.sleep(poll)
        # Our job by name: in a batch it runs beside others, and /progress alone shows the oldest.
        answer = await transport.read_progress(backend.backend, timeout=poll * 2, task_id=watch.task_id)
        state = answer.get("state", {}) if answer is not None else None
        if answer is None or not isinstance(state, dict):
            # No answer is no progress: a frozen process or a host gone silent (no RST) is hung
            # too. A dead worker fails the request itself, sooner.
            answer, state = {}, {}
            seen: tuple[Any, ...] = ("unreachable",)
        else:
            seen = (state.get("job"), state.get("job_no"), state.get("sampling_step"))
        if watch.listener is not None and _is_ours(state, backend, watch.task_id):
            step, steps = _steps(state)
            if steps and (step, steps) != reported:
                reported = (step, steps)
                watch.listener(ProgressSeen(watch.attempt, step, steps, float(answer.get("progress") or 0.0),
                                            answer.get("eta_relative")))
        if seen != last:
            last, last_change = seen, time.monotonic()
        elif time.monotonic() - last_change >= watch.deadline:
            return


def _is_ours(state: dict[str, Any], backend: BackendState, task_id: str | None) -> bool:
    """Is the job /progress describes the one this attempt sent? sdxlpool workers name it by our
    force_task_id; a plain A1111 server does not, so only when it runs nothing else of ours."""
    if not state.get("sampling_steps"):
        return False
    if backend.backend.kind == "a1111":
        return backend.inflight == 1
    return task_id is not None and state.get("job") == task_id


def _steps(state: dict[str, Any]) -> tuple[int, int]:
    """Denoising step k of n over the whole job (A1111 counts steps per batch)."""
    per_batch = int(state.get("sampling_steps") or 0)
    batches = max(1, int(state.get("job_count") or 1))
    batch_no = max(0, int(state.get("job_no") or 0))
    return batch_no * per_batch + int(state.get("sampling_step") or 0), batches * per_batch


_background: set[asyncio.Task[None]] = set()  # held, or a running task may be garbage-collected


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)
