"""`GatewayService`: the pool, the scheduler, the HTTP client, the background loops and, with
`--peer-port`, the link to the other gateway replicas (peers.py).

Created in the app's lifespan; routes reach it through `deps.GatewayDep`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx

from sdxlpool.api.gpu import normalize_gpu_name
from sdxlpool.api.strict import STRICT_HEADER, check_strict
from sdxlpool.errors import InvalidRequest, RequestError
from sdxlpool.gateway import events
from sdxlpool.gateway._bulk import BulkClient
from sdxlpool.gateway._watch import watch_file
from sdxlpool.gateway.admission import Admission, OnStarting, RateLimiter, TooBusy
from sdxlpool.gateway.api_keys import ApiKeys, Caller, Unauthorized, load_api_keys
from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.caller_options import VAE_SPECIAL, CallerOptions, check_options
from sdxlpool.gateway.caller_tasks import (
    CallerTask,
    CallerTasks,
    internal_answer,
    is_running,
    progress_answer,
)
from sdxlpool.gateway.catalog import Reply, ask_each, first_answer
from sdxlpool.gateway.demand import DemandTracker
from sdxlpool.gateway.discovery.static import load_backends_file, watch_backends_file
from sdxlpool.gateway.events import EventSink
from sdxlpool.gateway.forward import Forwarded, NoBackend, RoutingTrace, WorkersFull, forward
from sdxlpool.gateway.kinds import IMG2IMG, TXT2IMG, RequestKind
from sdxlpool.gateway.metrics import GatewayMetrics
from sdxlpool.gateway.peers import PeerLink
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.routing import Scheduler, default_scheduler
from sdxlpool.gateway.routing_file import load_routing_file
from sdxlpool.gateway.scraper import scrape_forever
from sdxlpool.gateway.settings import GatewaySettings
from sdxlpool.gateway.transport import HttpWorkerTransport, WorkerTransport

__all__ = ["GatewayService", "WorkerRejected", "WorkersSaturated", "parse_gpu_choice"]

log = logging.getLogger(__name__)
_CATALOG_TIMEOUT = 5.0  # seconds a worker has to answer a catalog GET
_PROGRESS_TIMEOUT = 2.0  # seconds a worker has to answer a caller's /progress


def parse_gpu_choice(text: str | list[str] | None) -> tuple[str, ...]:
    """`X-SDXL-GPU: A100,RTX-3090` (or a `gpus` list) -> canonical slugs in preference order."""
    if text is None:
        return ()
    if not isinstance(text, (str, list)) or not all(isinstance(item, str) for item in text):
        raise InvalidRequest("gpus", "must be a list of GPU model names, or one string of them separated by commas")
    items = text.split(",") if isinstance(text, str) else text
    slugs: list[str] = []
    for item in items:
        if not item.strip():
            continue
        try:
            slug = normalize_gpu_name(item)
        except ValueError as exc:
            raise InvalidRequest("gpus", str(exc)) from None
        if slug not in slugs:
            slugs.append(slug)
    return tuple(slugs)


class WorkerRejected(RequestError):
    """The worker answered the request with a client error (4xx): passed on with its status."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code = status, code

    @classmethod
    def from_answer(cls, status: int, body: Any) -> WorkerRejected:
        body = body if isinstance(body, dict) else {}
        return cls(status, str(body.get("error") or "rejected"), str(body.get("detail") or f"HTTP {status}"))


class WorkersSaturated(TooBusy):
    """`WorkersFull` answered like the gateway's own saturation: 429 with Retry-After."""

    def __init__(self, full: WorkersFull, retry_after: float) -> None:
        super().__init__("saturated", full.detail, retry_after)
        self.routing: RoutingTrace | None = full.routing


class GatewayService:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.pool = BackendPool()
        self.demand = DemandTracker(settings.demand_window, pool_gpus=settings.pool_gpus)
        self.metrics = GatewayMetrics(self.pool, self.demand, latency_target=settings.latency_target)
        self.scheduler = _scheduler(settings, lambda name, seconds: self.metrics.plugin_seconds.labels(name).observe(seconds))
        max_connections = 1000  # per client, to all workers together
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=200)
        timeout = httpx.Timeout(settings.attempt_timeout, connect=settings.connect_timeout)
        # Scrapes, /progress and /interrupt: plain httpx, whose errors tell refused from slow.
        self.client = httpx.AsyncClient(timeout=timeout, limits=limits)
        # txt2img itself, whose answers are megabytes: aiohttp, read in one piece (_bulk.py).
        self.bulk_client = BulkClient(max_connections=max_connections, connect_timeout=settings.connect_timeout)
        self.transport: WorkerTransport = HttpWorkerTransport(self.client, self.bulk_client)  # the loop's view of both
        self.api_keys = load_api_keys(settings.api_keys_file) if settings.api_keys_file else ApiKeys([])
        self.rate_limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.admission = Admission(self.pool, backlog_seconds=settings.backlog_seconds,
                                   queue_size=settings.queue_size, queue_deadline=settings.queue_deadline,
                                   demand=self.demand, pool_gpus=settings.pool_gpus,
                                   cold_start_deadline=settings.cold_start_deadline)
        self.metrics.queue_depth.set_function(lambda: self.admission.waiting)
        self._tasks: list[asyncio.Task[None]] = []
        self.peers: PeerLink | None = None  # opened in start() with --peer-port
        # A1111's per-client state, per caller: their requests in flight (progress, interrupt, skip)
        # and their options (caller_tasks.py, caller_options.py).
        self.caller_tasks = CallerTasks()
        self.caller_options = CallerOptions()

    async def start(self) -> None:
        settings = self.settings
        if settings.peer_port is not None:  # first: Kubernetes discovery reports peers to it
            self.peers = await PeerLink.open(self.pool, self.metrics.count_peer_messages, host=settings.host,
                                             port=settings.peer_port, peers=settings.peer_addresses)
            for direction, outcome in (("sent", "ok"), ("sent", "error"), ("received", "ok"), ("received", "ignored")):
                self.metrics.count_peer_messages(direction, outcome, 0)  # every series from the start, at 0
        if settings.backends_file is not None:
            self.pool.update(load_backends_file(settings.backends_file))
            self._tasks.append(asyncio.create_task(
                watch_backends_file(settings.backends_file, self.pool.update, settings.reload_interval)))
        if settings.api_keys_file is not None:
            self._tasks.append(asyncio.create_task(
                watch_file(settings.api_keys_file, load_api_keys, self._use_keys, settings.reload_interval)))
        if settings.kubernetes:
            from sdxlpool.gateway.discovery.kubernetes import PeerWatch, watch_pods

            peers = None if self.peers is None else PeerWatch(
                port=settings.peer_port or 0, own_ip=settings.pod_ip, apply=self.peers.set_discovered)
            self._tasks.append(asyncio.create_task(
                watch_pods(settings.namespace or "", settings.pool or "", self.pool.update,
                           kubeconfig=settings.kubeconfig, peers=peers)))
        self._tasks.append(asyncio.create_task(
            scrape_forever(self.pool, self.client, interval=settings.scrape_interval, timeout=settings.scrape_timeout)))

    def _announce(self, state: BackendState, cost: float) -> None:
        """Tell the other gateway replicas about a dispatch (a plain A1111 server is never scraped,
        so its load is each replica's own and is not shared)."""
        if self.peers is not None and state.backend.kind == "sdxlpool":
            self.peers.announce(state.name, cost)

    def _use_keys(self, keys: ApiKeys) -> None:
        log.info("API keys reloaded: %d keys", len(keys.keys))
        self.api_keys = keys

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.peers is not None:
            self.peers.close()
        await self.client.aclose()
        await self.bulk_client.aclose()

    @property
    def ready(self) -> bool:
        now = time.monotonic()
        return any(state.available(now) and (state.metrics is not None or (
            state.backend.kind == "a1111" and state.scraped_at is not None)) for state in self.pool.states())

    async def txt2img(self, raw: dict[str, Any], **options: Any) -> Forwarded:
        """`route(TXT2IMG, raw, ...)`."""
        return await self.route(TXT2IMG, raw, **options)

    async def route(self, kind: RequestKind, raw: dict[str, Any], *, gpu_header: str | None, client: str = "",
                    api_key: str | None = None, on_event: EventSink | None = None,
                    debug_routing: bool = False, strict: bool | None = None) -> Forwarded:
        """Admit and forward one request of `kind` (kinds.py: txt2img, img2img, the extras,
        png-info), every kind the same way: checked first (images included, by their headers), then
        admitted, routed, failed over. `debug_routing`: keep every attempt's explained scheduler
        decision (`Forwarded.routing`, or `routing` on the error raised). `strict` (the request's
        X-SDXL-Strict; None: --strict): fields that would not be applied are refused here, before
        routing, and the decision goes on to the worker in the same header for the rest."""
        started = time.monotonic()
        self.metrics.inflight.inc()
        gpu = "none"
        outcome = "failed"
        try:
            body = dict(raw)
            allowed = parse_gpu_choice(gpu_header if gpu_header is not None else body.pop("gpus", None))
            body.pop("gpus", None)
            # Admission: who calls (API key), their rate, then room in the pool (waiting in the
            # gateway queue if need be, by priority). Input is checked before any of it.
            caller = self.api_keys.caller(api_key, client)
            if kind.generation:
                body = self.caller_options.apply(caller.identity, body)  # the caller's POST /options values
            if kind.uploads:  # MBs of images to walk and probe: off the loop, not holding up other requests
                checked = await asyncio.to_thread(kind.check, body, self.settings.defaults, self.settings.limits)
            else:
                checked = kind.check(body, self.settings.defaults, self.settings.limits)
            strict_now = self.settings.strict if strict is None else strict
            check_strict(checked.ignored_fields, strict_now)
            # Unasked and not strict here: no header, so a worker's own --strict decides.
            headers = {STRICT_HEADER: "1" if strict_now else "0"} if strict_now or strict is not None else None
            self.rate_limiter.check(caller.identity, time.monotonic(), per_minute=caller.rate_per_minute,
                                    burst=caller.burst)
            # Demand, for the autoscaler (/v1/demand and the metrics): every request that got this far.
            self.metrics.demand_arrived(self.demand.arrived(allowed, checked.cost), checked.cost)
            if on_event is not None:
                on_event(events.queued(self.admission.waiting))
            task = self.caller_tasks.begin(caller.identity, body.get("force_task_id"))
            try:
                waited = await self.admission.admit(allowed, caller.priority, checked.cost,
                                                    on_starting=_starting_events(on_event))
                forwarded = await forward(
                    kind, body, cost=checked.cost, allowed_gpus=allowed, pool=self.pool,
                    scheduler=self.scheduler, transport=self.transport,
                    max_attempts=self.settings.max_attempts, attempt_timeout=self.settings.attempt_timeout,
                    progress_deadline=self.settings.progress_deadline,
                    listener=events.stream_listener(on_event) if on_event is not None else None,
                    progress_poll=self.settings.progress_poll, explain_routing=debug_routing, headers=headers,
                    loras=checked.loras,
                    on_attempt=lambda started: self.caller_tasks.sent(task, started.state, started.task_id),
                    on_dispatch=self._announce if self.peers is not None else None,
                )
            except WorkersFull as exc:  # the workers' own queues are full: saturation, like admission's
                raise WorkersSaturated(exc, self.admission.retry_after(allowed, time.monotonic())) from None
            finally:
                self.caller_tasks.end(task)
            for failure in forwarded.failures:
                self.metrics.failovers.labels(failure.worker, failure.kind.value).inc()
            self.metrics.attempts.observe(forwarded.attempts)
            gpu = forwarded.state.backend.gpu if forwarded.state else "none"
            outcome = "success" if forwarded.status_code < 400 else "client_error"
            forwarded.queue_seconds += waited
            return forwarded
        except TooBusy as exc:
            outcome = exc.code
            raise
        except InvalidRequest:
            outcome = "invalid"
            raise
        except Unauthorized:
            outcome = "unauthorized"
            raise
        except RequestError as exc:
            outcome = "no_backend" if exc.status == 503 else "failed"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            seconds = time.monotonic() - started
            self.metrics.inflight.dec()
            self.metrics.requests.labels(gpu, outcome).inc()
            self.metrics.latency.labels(gpu).observe(seconds)
            if outcome == "success":
                self.demand.finished(seconds)  # the observed p95 the autoscaler compares with its target

    async def generate(self, raw: dict[str, Any], *, client: str = "", api_key: str | None = None,
                       on_event: EventSink | None = None, debug_routing: bool = False,
                       strict: bool | None = None) -> dict[str, Any]:
        """The native API: A1111 fields plus `gpus` (and `debug_routing`); the result in
        `events.result`'s shape, plus `routing` when asked for (the field or `debug_routing`).
        A body with `init_images` is an img2img (inpainting with a `mask`), any other a txt2img.

        A worker's own refusal (an unknown sampler, say) is raised as `WorkerRejected` with its
        status, code and detail, so every caller reports errors one way.
        """
        started = time.monotonic()
        raw = dict(raw)
        debug_routing = _debug_routing_field(raw.pop("debug_routing", None)) or debug_routing
        kind = IMG2IMG if raw.get("init_images") is not None else TXT2IMG
        forwarded = await self.route(kind, raw, gpu_header=None, client=client, api_key=api_key, on_event=on_event,
                                     debug_routing=debug_routing, strict=strict)
        if forwarded.status_code >= 400 or forwarded.state is None:
            raise WorkerRejected.from_answer(forwarded.status_code, forwarded.body)
        native = events.result(forwarded.body, forwarded.state, attempts=forwarded.attempts,
                               queue_seconds=forwarded.queue_seconds, total_seconds=time.monotonic() - started)
        if forwarded.routing is not None:
            native["routing"] = forwarded.routing
        return native

    # -- A1111's per-client state, per caller (caller_tasks.py, caller_options.py) ----------------------
    def caller(self, api_key: str | None, client: str) -> Caller:
        """Who calls (`Unauthorized` when keys are configured and this one is not valid)."""
        return self.api_keys.caller(api_key, client)

    async def caller_progress(self, identity: str, *, current_image: bool) -> dict[str, Any]:
        """GET /sdapi/v1/progress for this caller: its running job, else a queued or idle answer."""
        tasks = [replace(task) for task in self.caller_tasks.of(identity)]  # as they are now
        answers = await asyncio.gather(*(self._read_progress(task, current_image) for task in tasks))
        return progress_answer(tasks, list(answers))

    async def caller_internal_progress(self, identity: str, task_id: str, *, id_live_preview: int,
                                       live_preview: bool) -> dict[str, Any]:
        """POST /internal/progress: the caller's task `task_id`, in A1111's internal shape."""
        tasks = self.caller_tasks.of(identity)
        found = self.caller_tasks.find(identity, task_id)
        task = replace(found) if found is not None else None
        answer = await self._read_progress(task, live_preview) if task is not None else None
        position = tasks.index(found) + 1 if found is not None else 0
        return internal_answer(task, answer, completed=self.caller_tasks.completed(identity, task_id),
                               position=position, queued=len(tasks), id_live_preview=id_live_preview,
                               live_preview=live_preview)

    async def stop_caller_jobs(self, identity: str, *, skip: bool = False) -> bool:
        """Interrupt (or `skip` the current batch of) the caller's running job(s), and only those;
        True when one was running. An sdxlpool worker is told the job's name, so it stops nothing
        else even when the job ended a moment ago (caller_tasks.py)."""
        tasks = [replace(task) for task in self.caller_tasks.of(identity) if task.state is not None]
        answers = await asyncio.gather(*(self._read_progress(task, False) for task in tasks))
        running = [task for task, answer in zip(tasks, answers, strict=True) if is_running(answer, task)]
        for task in running:
            assert task.state is not None
            backend = task.state.backend
            name = task.attempt_id if backend.kind == "sdxlpool" else None
            stop = self.transport.skip if skip else self.transport.interrupt
            await stop(backend, task_id=name)
        return bool(running)

    async def _read_progress(self, task: CallerTask, current_image: bool) -> dict[str, Any] | None:
        if task.state is None:
            return None
        return await self.transport.read_progress(task.state.backend, timeout=_PROGRESS_TIMEOUT,
                                                  current_image=current_image, task_id=task.attempt_id)

    async def caller_options_view(self, identity: str) -> dict[str, Any]:
        """GET /sdapi/v1/options: the pool's options (a worker's) under the caller's own values."""
        pool = await self.any_backend_get("/sdapi/v1/options")
        return self.caller_options.view(identity, pool if isinstance(pool, dict) else {})

    async def set_caller_options(self, identity: str, values: Any) -> None:
        """POST /sdapi/v1/options: check the values against what the pool has, then store them for
        this caller only (caller_options.py); no worker's options change."""
        if not isinstance(values, dict):
            raise InvalidRequest("body", "must be a JSON object of option names and values")
        checkpoints = await self._pool_list("/sdapi/v1/sd-models") if values.get("sd_model_checkpoint") else []
        vae = values.get("sd_vae")
        vaes = await self._pool_list("/sdapi/v1/sd-vae") if vae is not None and vae not in VAE_SPECIAL else []
        self.caller_options.set(identity, check_options(values, checkpoints=checkpoints, vaes=vaes))

    async def _pool_list(self, path: str) -> list[dict[str, Any]]:
        """Every available worker's A1111 list at `path`, entries together; 503 when none answers."""
        replies = [reply for reply in await self.each_backend("GET", path) if reply.ok and isinstance(reply.body, list)]
        if not replies:
            raise NoBackend("no worker answered")
        return [entry for reply in replies for entry in reply.body if isinstance(entry, dict)]

    async def any_backend_get(self, path: str) -> Any:
        """A read-only A1111 endpoint answered by the first healthy worker (the pool shares a model)."""
        now = time.monotonic()
        states = sorted(self.pool.states(), key=lambda s: not s.available(now))
        reply = await first_answer(self.client, states, path, timeout=_CATALOG_TIMEOUT)
        if reply is None:
            raise NoBackend("no worker answered")
        return reply.body

    async def each_backend(self, method: str, path: str, *, timeout: float = _CATALOG_TIMEOUT,
                           available_only: bool = True) -> list[Reply]:
        """`method path` on every worker at once (only the available ones, while there are any)."""
        now = time.monotonic()
        states = self.pool.states()
        if available_only:
            states = [state for state in states if state.available(now)] or states
        return await ask_each(self.client, states, method, path, timeout=timeout)


def _starting_events(on_event: EventSink | None) -> OnStarting | None:
    """Admission's word that the request waits for a worker to start, as a `starting` event."""
    if on_event is None:
        return None
    sink = on_event
    return lambda gpu_models, seconds: sink(events.starting(gpu_models, seconds))


def _debug_routing_field(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return bool(value)
    raise InvalidRequest("debug_routing", f"must be true or false, got {value!r}")


def _scheduler(settings: GatewaySettings, on_plugin_seconds: Callable[[str, float], None]) -> Scheduler:
    if settings.routing_file is not None:
        return load_routing_file(settings.routing_file, on_plugin_seconds=on_plugin_seconds)
    # With the pool's latency target (an autoscaled pool), route like the autoscaler plans: the
    # cheapest per step among the workers that finish within the budget (routing/scorers/cost.py).
    return default_scheduler(stale_after=settings.stale_after, cost_weight=settings.cost_weight,
                             latency_target=settings.latency_target, on_plugin_seconds=on_plugin_seconds)
