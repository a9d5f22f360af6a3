"""Send one txt2img to the pool: pick a worker, watch it, and fail over without losing the request.

Steps of `forward_txt2img`:

  1. fix the seed: `seed: -1` becomes a concrete number *before* the first attempt, so a retry on
     another worker makes the image the first would have (workers draw noise on the CPU)
  2. per attempt (at most `max_attempts`, never the same worker twice):
     2a. ask the scheduler for the best worker not tried yet among the allowed GPU models
     2b. count the request against that worker at once (a burst between two scrapes spreads out)
     2c. POST it, while a watchdog polls the worker's /progress: no progress for
         `progress_deadline` seconds means a hung worker, and the attempt is abandoned
     2d. success -> done; the client's own error (4xx) -> answered as is; refused, reset, 5xx,
         timeout or hang -> mark the worker down (circuit breaker) and try the next one; a full
         worker queue (503 queue_full) -> try the next one, and when every worker tried was
         full, `WorkersFull` (the service answers 429 with Retry-After)
  3. a client that goes away cancels the attempt and interrupts the job on the worker

With an `on_event` listener (the WebSocket and streaming API), each attempt is named with A1111's
`force_task_id`, announced as `assigned`, and the watchdog polls more often and reports the
steps of *that* job (the worker's /progress names the running job) as `progress` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from sdxlpool.api.generation import MAX_SEED
from sdxlpool.errors import RequestError
from sdxlpool.gateway import events
from sdxlpool.gateway._bulk import BulkClient, BulkTimeout, BulkTransportError
from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.events import EventSink
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.routing import RouteRequest, Scheduler

__all__ = ["Forwarded", "NoBackend", "AllAttemptsFailed", "WorkersFull", "forward_txt2img", "fix_seeds"]

log = logging.getLogger(__name__)


class NoBackend(RequestError):
    """No worker of the allowed GPU models is up (503)."""

    status = 503
    code = "no_backend"


class AllAttemptsFailed(RequestError):
    """Every worker tried failed (502): the request was not lost silently, it failed loudly."""

    status = 502
    code = "all_attempts_failed"


class WorkersFull(RequestError):
    """Every worker tried refused the request for a full queue (`--max-queue`): the service
    answers it as saturation, 429 with Retry-After, not as a failure."""

    status = 429
    code = "saturated"


class _AttemptFailed(Exception):
    def __init__(self, reason: str, *, worker_fault: bool = True, queue_full: bool = False) -> None:
        super().__init__(reason)
        self.worker_fault = worker_fault
        self.queue_full = queue_full


@dataclass
class Forwarded:
    """The worker's answer: its status and body bytes as received (a success is not decoded on
    the way, see passthrough.py), where it ran and how it got there."""

    status_code: int
    content: bytes
    state: BackendState | None
    attempts: int
    failures: list[str] = field(default_factory=list)
    queue_seconds: float = 0.0
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


async def forward_txt2img(
    body: dict[str, Any],
    *,
    cost: float,
    allowed_gpus: tuple[str, ...],
    pool: BackendPool,
    scheduler: Scheduler,
    client: httpx.AsyncClient,
    bulk_client: BulkClient,
    max_attempts: int,
    attempt_timeout: float,
    progress_deadline: float,
    on_event: EventSink | None = None,
    progress_poll: float = 0.25,
) -> Forwarded:
    """`client` watches and interrupts workers; `bulk_client` sends the txt2img requests
    themselves, whose answers are megabytes (_bulk.py)."""
    # 1. Fix the seed.
    body = fix_seeds(body)
    request_id = uuid.uuid4().hex[:12]
    tried: set[str] = set()
    failures: list[str] = []
    all_full = True
    started = time.monotonic()
    for attempt in range(1, max_attempts + 1):
        # 2a. Choose.
        now = time.monotonic()
        decision = scheduler.schedule(
            RouteRequest(cost=cost, allowed_gpus=allowed_gpus, exclude=frozenset(tried), now=now), pool.states()
        )
        if decision.state is None:
            if failures:
                break
            raise NoBackend(decision.reason or "no backend available")
        state = decision.state
        tried.add(state.backend.name)
        # 2b. Count it against the worker now.
        state.dispatch(cost, now)
        if on_event is None:
            watch = _Watch(progress_deadline)
        else:
            watch = _Watch(progress_deadline, task_id=f"sdxlpool-{request_id}-{attempt}", poll=progress_poll,
                           on_event=on_event)
            on_event(events.assigned(state, attempt))
        try:
            # 2c. Send and watch.
            status, content, payload = await _attempt(client, bulk_client, state, body, attempt_timeout,
                                                      watch)
        except _AttemptFailed as exc:
            failures.append(f"{state.backend.name}: {exc}")
            all_full = all_full and exc.queue_full
            if exc.queue_full:
                state.record_full(time.monotonic())
            if exc.worker_fault:
                state.record_failure(time.monotonic())
            log.warning("attempt %d on %s failed: %s", attempt, state.backend.name, exc)
            continue
        finally:
            state.complete(cost)
        # 2d. Done (success, or the client's own error, which another worker would repeat).
        if status < 400:
            state.record_success(time.monotonic())
        return Forwarded(status, content, state, attempt, failures, queue_seconds=now - started, _body=payload)
    tried_text = "; ".join(failures) or "none"
    if failures and all_full:
        raise WorkersFull(f"every worker tried has a full queue ({tried_text})")
    raise AllAttemptsFailed(f"the request failed on every worker tried ({tried_text})")


@dataclass(frozen=True)
class _Watch:
    """How one attempt is watched: the hang deadline, and for a listener, its job's progress."""

    deadline: float
    task_id: str | None = None  # sent as force_task_id, so /progress shows whether our job runs
    poll: float = 1.0
    on_event: EventSink | None = None


async def _attempt(
    client: httpx.AsyncClient, bulk_client: BulkClient, state: BackendState, body: dict[str, Any],
    timeout: float, watch: _Watch,
) -> tuple[int, bytes, Any]:
    """(status, body bytes, decoded body or None): a success is not decoded, only checked to be a
    JSON object; errors are small and decoded, to tell a full queue from a broken worker."""
    url = state.backend.url
    if watch.task_id is not None:
        body = {**body, "force_task_id": watch.task_id}
    request = asyncio.ensure_future(bulk_client.post_json(url + "/sdapi/v1/txt2img", body, timeout=timeout))
    watchdog = asyncio.ensure_future(_watch_progress(client, state, watch))
    try:
        done, _ = await asyncio.wait({request, watchdog}, return_when=asyncio.FIRST_COMPLETED)
        if request not in done:
            request.cancel()
            _in_background(_interrupt(client, url))  # free the GPU, without making the failover wait for it
            raise _AttemptFailed(f"no progress for {watch.deadline:g}s")
        try:
            status, content = request.result()
        except BulkTimeout as exc:
            raise _AttemptFailed(f"timed out: {exc}") from exc
        except BulkTransportError as exc:
            raise _AttemptFailed(str(exc)) from exc
    except asyncio.CancelledError:
        # The client went away. Closing our connection makes an sdxlpool worker drop the queued job
        # or interrupt the running one (exactly ours); a plain A1111 server only knows /interrupt.
        request.cancel()
        if state.backend.kind == "a1111":
            await _interrupt(client, url)
        raise
    finally:
        watchdog.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watchdog
    if status < 400:
        if not (content.lstrip()[:1] == b"{" and content.rstrip()[-1:] == b"}"):
            raise _AttemptFailed(f"HTTP {status} with a body that is not a JSON object")
        return status, content, None
    try:
        payload = json.loads(content)
    except ValueError as exc:
        raise _AttemptFailed(f"HTTP {status} with a body that is not JSON") from exc
    if status == 503 and isinstance(payload, dict) and payload.get("error") == "queue_full":
        raise _AttemptFailed("queue full", worker_fault=False, queue_full=True)  # busy, not broken: try another
    if status >= 500:
        raise _AttemptFailed(f"HTTP {status}: {payload.get('detail', '') if isinstance(payload, dict) else ''}")
    return status, content, payload


async def _watch_progress(client: httpx.AsyncClient, backend: BackendState, watch: _Watch) -> None:
    """Return when the worker has shown no progress for `watch.deadline` seconds (it is hung).

    Meanwhile report our job's steps to `watch.on_event`, each change once.
    """
    url = backend.backend.url
    poll = min(watch.poll, watch.deadline / 4)
    last: tuple[Any, ...] | None = None
    last_change = time.monotonic()
    reported: tuple[int, int] | None = None
    while True:
        await asyncio.sleep(poll)
        try:
            response = await client.get(url + "/sdapi/v1/progress", params={"skip_current_image": "true"},
                                        timeout=poll * 2)
            answer = response.json()
            state = answer.get("state", {})
            seen: tuple[Any, ...] = (state.get("job"), state.get("job_no"), state.get("sampling_step"))
        except (httpx.HTTPError, ValueError, AttributeError):
            # No answer is no progress: a frozen process or a host gone silent (no RST) is hung
            # too. A dead worker fails the request itself, sooner.
            answer, state = {}, {}
            seen = ("unreachable",)
        if watch.on_event is not None and _is_ours(state, backend, watch.task_id):
            step, steps = _steps(state)
            if steps and (step, steps) != reported:
                reported = (step, steps)
                watch.on_event(events.progress(step, steps, float(answer.get("progress") or 0.0),
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


async def _interrupt(client: httpx.AsyncClient, url: str) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await client.post(url + "/sdapi/v1/interrupt", timeout=2)
