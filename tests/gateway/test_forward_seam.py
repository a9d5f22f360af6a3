"""The failover loop over an in-memory `WorkerTransport`: no sockets, deadlines of a few ms.

Each case scripts what every worker does with a request (answer, refuse, hang, ...) and checks
what the loop made of it: the answer, the error, the workers tried in order, the failure records,
the seeds sent, interrupts and cancellations. The real-process versions of the same behaviour are
in test_gateway_sim.py, test_gateway_http.py and test_native_api.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.api.generation import MAX_SEED
from sdxlpool.gateway import events
from sdxlpool.gateway.admission import TooBusy
from sdxlpool.gateway.attempts import (
    AttemptFailed,
    AttemptFailure,
    AttemptStarted,
    FailureKind,
    ForwardEvent,
    ProgressSeen,
)
from sdxlpool.gateway.backends import Backend, BackendKind
from sdxlpool.gateway.forward import (
    AllAttemptsFailed,
    Forwarded,
    NoBackend,
    WorkersFull,
    fix_seeds,
)
from sdxlpool.gateway.forward import forward as forward_request
from sdxlpool.gateway.kinds import EXTRA_SINGLE_IMAGE, TXT2IMG, RequestKind
from sdxlpool.gateway.peers import PeerLink, decode_dispatch
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.routing import default_scheduler
from sdxlpool.gateway.routing.testing import fake_state
from sdxlpool.gateway.service import GatewayService
from sdxlpool.gateway.settings import GatewaySettings
from sdxlpool.gateway.transport import TransportFailure, TransportTimeout

DEADLINE = 0.04  # the hang deadline: a hung fake is given up on after ~40 ms
POLL = 0.01
CASE_SECONDS = 0.5  # each case ends well inside this, or the loop waited for something it should not

ANSWERS = {
    "ok": (200, json.dumps({"images": ["aW1n"], "parameters": {}, "info": "{}"}).encode()),
    "5xx": (500, b'{"error": "internal", "detail": "CUDA error: device-side assert"}'),
    "full": (503, b'{"error": "queue_full", "detail": "the queue is full"}'),
    "4xx": (404, b'{"error": "not_found", "detail": "unknown sampler: Nope"}'),
    "bad_body": (200, b"<html>proxy error</html>"),
}


@dataclass
class FakeTransport:
    """Workers by name, each doing one thing with every request:

    ok, 5xx, full, 4xx, bad_body   answer at once (ANSWERS)
    refuse, timeout                raise the transport's errors
    hang                           never answer, /progress frozen
    slow                           never answer, /progress moving (runs until cancelled)
    steps                          answer ok after a few /progress polls that show our job moving
    late                           answer ok after 3 hang deadlines, /progress frozen meanwhile
    """

    behaviours: Mapping[str, str]
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    polls: Counter[str] = field(default_factory=Counter)

    async def send(self, backend: Backend, path: str, body: Mapping[str, Any], *, timeout: float,
                   headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        self.paths.append(path)
        self.sent.append((backend.name, dict(body)))
        behaviour = self.behaviours[backend.name]
        if behaviour == "refuse":
            raise TransportFailure("ClientConnectorError: connection refused")
        if behaviour == "timeout":
            raise TransportTimeout("TimeoutError")
        if behaviour == "late":
            await asyncio.sleep(3 * DEADLINE)
            return ANSWERS["ok"]
        if behaviour == "steps":
            while self.polls[backend.name] < 3:
                await asyncio.sleep(POLL / 2)
            return ANSWERS["ok"]
        if behaviour in ("hang", "slow"):
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.append(backend.name)
                raise
        return ANSWERS[behaviour]

    async def read_progress(self, backend: Backend, *, timeout: float, task_id: str | None = None) -> dict[str, Any] | None:
        self.polls[backend.name] += 1
        job = next((body.get("force_task_id") for name, body in reversed(self.sent) if name == backend.name), None)
        step = 0 if self.behaviours[backend.name] in ("hang", "late") else self.polls[backend.name]
        return {"progress": step / 10, "eta_relative": 1.0,
                "state": {"job": job, "job_no": 0, "job_count": 1, "sampling_step": step, "sampling_steps": 10}}

    async def interrupt(self, backend: Backend) -> None:
        self.interrupted.append(backend.name)

    def tried(self) -> list[str]:
        return [name for name, _ in self.sent]


def pool_of(workers: list[tuple[str, str]], kind: BackendKind = "sdxlpool", pool: BackendPool | None = None
            ) -> BackendPool:
    """Workers in the scheduler's order of preference: each a little slower than the one before."""
    now = time.monotonic()
    made = [fake_state(name, step_seconds=0.1 * (i + 1), scraped_at=now, kind=kind)
            for i, (name, _) in enumerate(workers)]
    pool = BackendPool() if pool is None else pool  # (an empty pool is falsy)
    pool.update(state.backend for state in made)
    for state in made:
        live = pool.get(state.name)
        assert live is not None
        live.metrics, live.scraped_at = state.metrics, state.scraped_at
    return pool


async def forward(transport: FakeTransport, pool: BackendPool, *, max_attempts: int = 3,
                  body: dict[str, Any] | None = None, kind: RequestKind = TXT2IMG, **kwargs: Any) -> Forwarded:
    return await forward_request(
        kind, body or {"prompt": "x", "seed": -1}, cost=10, allowed_gpus=(), pool=pool, scheduler=default_scheduler(),
        transport=transport, max_attempts=max_attempts, attempt_timeout=1.0, progress_deadline=DEADLINE,
        progress_poll=POLL, **kwargs)


async def settle(condition: Any) -> None:
    """Let background tasks (the interrupt of a hung worker) run: a few loop turns, no real wait."""
    for _ in range(20):
        if condition():
            return
        await asyncio.sleep(0)


@dataclass(frozen=True)
class Case:
    workers: list[tuple[str, str]]  # (name, behaviour), in the scheduler's order of preference
    tried: list[str]  # the workers the request was sent to, in order
    failures: list[FailureKind]  # the kinds of the abandoned attempts, in order
    status: int | None = 200  # the answer's status, None when an error is raised
    error: type[Exception] | None = None
    interrupted: list[str] = field(default_factory=list)
    max_attempts: int = 3


CASES = [
    pytest.param(Case([("a", "ok"), ("b", "ok")], tried=["a"], failures=[]), id="first-worker-answers"),
    pytest.param(Case([("a", "refuse"), ("b", "ok")], tried=["a", "b"], failures=[FailureKind.TRANSPORT]),
                 id="refused-then-success-elsewhere"),
    pytest.param(Case([("a", "timeout"), ("b", "ok")], tried=["a", "b"], failures=[FailureKind.TIMEOUT]),
                 id="timeout-then-success"),
    pytest.param(Case([("a", "hang"), ("b", "ok")], tried=["a", "b"], failures=[FailureKind.HUNG],
                      interrupted=["a"]), id="hang-then-interrupt-and-success"),
    pytest.param(Case([("a", "5xx"), ("b", "ok")], tried=["a", "b"], failures=[FailureKind.HTTP_5XX]),
                 id="5xx-then-success"),
    pytest.param(Case([("a", "bad_body"), ("b", "ok")], tried=["a", "b"], failures=[FailureKind.BAD_BODY]),
                 id="bad-body-then-success"),
    pytest.param(Case([("a", "full"), ("b", "ok")], tried=["a", "b"], failures=[FailureKind.QUEUE_FULL]),
                 id="full-then-success"),
    pytest.param(Case([("a", "4xx"), ("b", "ok")], tried=["a"], failures=[], status=404),
                 id="client-4xx-passed-through-without-failover"),
    pytest.param(Case([("a", "full"), ("b", "full"), ("c", "full")], tried=["a", "b", "c"],
                      failures=[FailureKind.QUEUE_FULL] * 3, status=None, error=WorkersFull), id="all-workers-full"),
    pytest.param(Case([("a", "full"), ("b", "refuse")], tried=["a", "b"],
                      failures=[FailureKind.QUEUE_FULL, FailureKind.TRANSPORT], status=None, error=AllAttemptsFailed),
                 id="full-and-broken-is-a-failure-not-saturation"),
    pytest.param(Case([("a", "refuse"), ("b", "5xx"), ("c", "ok")], tried=["a", "b"],
                      failures=[FailureKind.TRANSPORT, FailureKind.HTTP_5XX], status=None, error=AllAttemptsFailed,
                      max_attempts=2), id="max-attempts-respected"),
    pytest.param(Case([("a", "refuse"), ("b", "refuse")], tried=["a", "b"], failures=[FailureKind.TRANSPORT] * 2,
                      status=None, error=AllAttemptsFailed, max_attempts=5),
                 id="never-the-same-worker-twice"),
]


@pytest.mark.parametrize("case", CASES)
async def test_failover(case: Case) -> None:
    transport = FakeTransport(dict(case.workers))
    pool = pool_of(case.workers)
    started = time.monotonic()
    if case.error is None:
        forwarded = await forward(transport, pool, max_attempts=case.max_attempts)
        assert forwarded.status_code == case.status
        assert forwarded.state is not None and forwarded.state.name == case.tried[-1]
        assert forwarded.attempts == len(case.tried)
        failures = forwarded.failures
    else:
        with pytest.raises(case.error) as raised:
            await forward(transport, pool, max_attempts=case.max_attempts)
        failures = []
        for worker in case.tried:  # the error names every worker tried and why
            assert f"{worker}: " in raised.value.detail  # type: ignore[attr-defined]
    assert time.monotonic() - started < CASE_SECONDS
    assert transport.tried() == case.tried
    assert len(set(transport.tried())) == len(transport.tried())  # never the same worker twice
    if case.error is None:
        assert [f.kind for f in failures] == case.failures
        assert [(f.worker, f.attempt) for f in failures] == [(worker, i) for i, worker in
                                                             enumerate(case.tried[:len(failures)], start=1)]
    await settle(lambda: transport.interrupted == case.interrupted)
    assert transport.interrupted == case.interrupted
    # Every dispatch was completed, and only real faults opened a circuit.
    for state in pool.states():
        assert state.inflight == 0
    kinds = dict(zip(case.tried[:len(case.failures)], case.failures, strict=True))
    for name, kind in kinds.items():
        failed = pool.get(name)
        assert failed is not None
        full = kind is FailureKind.QUEUE_FULL  # busy, not broken: the circuit stays closed
        assert (failed.circuit.failures, failed.refused_at is not None) == ((0, True) if full else (1, False)), name


@pytest.mark.parametrize(("first", "kind"), [("refuse", FailureKind.TRANSPORT), ("hang", FailureKind.HUNG),
                                             ("5xx", FailureKind.HTTP_5XX)])
async def test_a_retry_asks_for_the_same_image(first: str, kind: FailureKind) -> None:
    """`seed: -1` is fixed once, before the first attempt: the second worker gets the same seeds."""
    transport = FakeTransport({"a": first, "b": "ok"})
    forwarded = await forward(transport, pool_of([("a", first), ("b", "ok")]),
                              body={"prompt": "x", "seed": -1, "subseed": -1})
    assert forwarded.failures[0].kind is kind
    (name_a, body_a), (name_b, body_b) = transport.sent
    assert (name_a, name_b) == ("a", "b")
    assert body_a["seed"] == body_b["seed"] and body_a["seed"] >= 0
    assert body_a["subseed"] == body_b["subseed"] and body_a["subseed"] >= 0


async def test_every_kind_goes_to_its_own_route_and_only_a_generation_gets_a_seed() -> None:
    """The loop is one for every kind: an extras request fails over the same way, to its own path,
    and is sent unchanged (no seed to fix: it has none)."""
    transport = FakeTransport({"a": "refuse", "b": "ok"})
    extras = {"image": "aW1n", "upscaling_resize": 2}
    forwarded = await forward(transport, pool_of([("a", "refuse"), ("b", "ok")]), body=extras,
                              kind=EXTRA_SINGLE_IMAGE)
    assert forwarded.attempts == 2 and forwarded.state is not None and forwarded.state.name == "b"
    assert transport.paths == ["/sdapi/v1/extra-single-image"] * 2
    assert [body for _, body in transport.sent] == [extras, extras]
    transport = FakeTransport({"a": "ok"})
    await forward(transport, pool_of([("a", "ok")]), body={"prompt": "x"})
    assert transport.paths == ["/sdapi/v1/txt2img"] and transport.sent[0][1]["seed"] >= 0


async def test_extras_are_not_judged_by_progress_they_cannot_show() -> None:
    """An upscale shows no denoising steps on /progress: it is not abandoned as hung, as a txt2img
    whose steps stopped moving is."""
    workers = [("a", "late"), ("b", "ok")]
    transport = FakeTransport(dict(workers))
    forwarded = await forward(transport, pool_of(workers), body={"image": "aW1n"}, kind=EXTRA_SINGLE_IMAGE)
    assert (forwarded.attempts, forwarded.failures, transport.polls["a"]) == (1, [], 0)
    transport = FakeTransport(dict(workers))
    forwarded = await forward(transport, pool_of(workers))
    assert [f.kind for f in forwarded.failures] == [FailureKind.HUNG] and forwarded.attempts == 2


NOT_A_SEED = [pytest.param(-1, id="minus-one"), pytest.param(None, id="missing"), pytest.param(-7, id="negative"),
              pytest.param(True, id="bool"), pytest.param(False, id="bool-false"), pytest.param(1.5, id="float"),
              pytest.param("12", id="string")]


@pytest.mark.parametrize("value", NOT_A_SEED)
@pytest.mark.parametrize(("key", "other"), [("seed", "subseed"), ("subseed", "seed")])
def test_fix_seeds_draws_a_concrete_seed_for_anything_but_one(value: Any, key: str, other: str) -> None:
    """-1, missing, negative, a bool or any other type: drawn here, once, in A1111's range."""
    body = {"prompt": "x", other: 5, **({} if value is None else {key: value})}
    given = dict(body)
    fixed = fix_seeds(body, random.Random(1))
    assert fixed[key] == random.Random(1).randint(0, MAX_SEED)  # the draw itself, not a constant
    assert type(fixed[key]) is int and 0 <= fixed[key] <= MAX_SEED
    assert fixed[other] == 5  # a concrete one is kept
    assert body == given  # the caller's body is not changed


@pytest.mark.parametrize("value", [0, 1, 1234, MAX_SEED])
def test_fix_seeds_keeps_a_concrete_seed_and_subseed(value: int) -> None:
    assert fix_seeds({"prompt": "x", "seed": value, "subseed": value}, random.Random(1)) == {
        "prompt": "x", "seed": value, "subseed": value}


def test_fix_seeds_draws_seed_and_subseed_independently() -> None:
    fixed = fix_seeds({"seed": -1, "subseed": -1}, random.Random(1))
    assert fixed["seed"] != fixed["subseed"]
    assert len({fix_seeds({"seed": -1})["seed"] for _ in range(5)}) > 1  # a fresh draw per request


@pytest.mark.parametrize(("kind", "interrupted"), [pytest.param("sdxlpool", [], id="sdxlpool-closing-is-enough"),
                                                   pytest.param("a1111", ["a"], id="a1111-gets-an-interrupt")])
async def test_a_client_gone_mid_attempt_cancels_it(kind: BackendKind, interrupted: list[str]) -> None:
    transport = FakeTransport({"a": "slow", "b": "ok"})
    pool = pool_of([("a", "slow"), ("b", "ok")], kind=kind)
    if kind == "a1111":  # no metrics to rank by: make "a" the obvious choice
        b = pool.get("b")
        assert b is not None
        b.dispatch(1000, time.monotonic())
    task = asyncio.ensure_future(forward(transport, pool))
    await settle(lambda: transport.polls["a"] >= 1)
    while transport.polls["a"] < 2:  # running, and showing progress: not hung
        await asyncio.sleep(POLL)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert transport.tried() == ["a"]  # no failover for a client that left
    assert transport.cancelled == ["a"]
    assert transport.interrupted == interrupted
    a = pool.get("a")
    assert a is not None and a.inflight == 0 and a.circuit.failures == 0


@asynccontextmanager
async def gateway_service(tmp_path: Path, workers: list[tuple[str, str]], kind: BackendKind = "sdxlpool"
                          ) -> AsyncIterator[GatewayService]:
    """The gateway's service over fake workers, not started (no file watching, no scrapes). Made in
    the test's own event loop."""
    service = GatewayService(GatewaySettings(backends_file=tmp_path / "unused.yaml", default_width=128,
                                             default_height=128, progress_deadline=DEADLINE))
    pool_of(workers, kind, pool=service.pool)
    service.transport = FakeTransport(dict(workers))
    try:
        yield service
    finally:
        await service.close()


async def test_all_workers_full_is_answered_as_saturation_with_retry_after(tmp_path: Path) -> None:
    """The service turns `WorkersFull` into the gateway's own 429, with a Retry-After."""
    async with gateway_service(tmp_path, [("a", "full"), ("b", "full")]) as service:
        with pytest.raises(TooBusy) as raised:
            await service.txt2img({"prompt": "x", "steps": 10}, gpu_header=None)
    assert (raised.value.status, raised.value.code) == (429, "saturated")
    assert raised.value.retry_after >= 1
    assert "a: queue full" in raised.value.detail and "b: queue full" in raised.value.detail
    assert service.metrics.registry.get_sample_value(
        f"{mn.GATEWAY_REQUESTS}_total", {"gpu_model": "none", "outcome": "saturated"}) == 1


async def test_failovers_are_counted_by_worker_and_reason(tmp_path: Path) -> None:
    async with gateway_service(tmp_path, [("a", "hang"), ("b", "refuse"), ("c", "ok")]) as service:
        forwarded = await service.txt2img({"prompt": "x", "steps": 10}, gpu_header=None)
    assert forwarded.state is not None and forwarded.state.name == "c"
    counted = {(s.labels["backend"], s.labels["reason"]): s.value
               for metric in service.metrics.registry.collect() if metric.name == mn.GATEWAY_FAILOVERS
               for s in metric.samples if s.name.endswith("_total")}
    assert counted == {("a", "hung"): 1.0, ("b", "transport"): 1.0}


@pytest.mark.parametrize(("kind", "announced"), [("sdxlpool", [("a", 10.0)]), ("a1111", [])])
async def test_the_service_announces_its_dispatches_to_its_peers(tmp_path: Path, kind: BackendKind,
                                                                 announced: list[tuple[str, float]]) -> None:
    """Each dispatch goes to the other gateway replicas (peers.py), but not one to a plain A1111
    server: it is never scraped, so its load is each replica's own."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        async with gateway_service(tmp_path, [("a", "ok")], kind) as service:
            service.peers = await PeerLink.open(service.pool, service.metrics.count_peer_messages, host="127.0.0.1",
                                                port=0, peers=[peer.getsockname()])
            await service.txt2img({"prompt": "x", "steps": 10, "width": 1024, "height": 1024}, gpu_header=None)
        heard = []
        with contextlib.suppress(BlockingIOError):  # loopback: a datagram sent is already there
            while True:
                message = decode_dispatch(peer.recv(2048))
                assert message is not None
                heard.append((message.backend, message.cost))
    assert heard == announced


async def test_no_backend_before_any_attempt() -> None:
    transport = FakeTransport({"a": "ok"})
    with pytest.raises(NoBackend, match="gpu_allowed"):
        await forward_request(TXT2IMG, {"prompt": "x"}, cost=10, allowed_gpus=("h100",), pool=pool_of([("a", "ok")]),
                              scheduler=default_scheduler(), transport=transport, max_attempts=3,
                              attempt_timeout=1.0, progress_deadline=DEADLINE)
    assert transport.sent == []


async def test_the_listener_hears_each_attempt_and_the_progress_of_its_own_job() -> None:
    transport = FakeTransport({"a": "refuse", "b": "steps"})
    heard: list[ForwardEvent] = []
    forwarded = await forward(transport, pool_of([("a", "refuse"), ("b", "steps")]), listener=heard.append)
    assert forwarded.state is not None and forwarded.state.name == "b"
    started = [(r.attempt, r.state.name) for r in heard if isinstance(r, AttemptStarted)]
    failed = [r.failure for r in heard if isinstance(r, AttemptFailed)]
    progress = [r for r in heard if isinstance(r, ProgressSeen)]
    assert started == [(1, "a"), (2, "b")]
    assert [(f.worker, f.attempt, f.kind) for f in failed] == [("a", 1, FailureKind.TRANSPORT)]
    assert progress and all(p.attempt == 2 and p.steps == 10 for p in progress)
    assert [p.step for p in progress] == sorted({p.step for p in progress})  # each step once, in order
    # Each attempt names its job, so the progress of another job is never reported as ours.
    assert [body["force_task_id"].rsplit("-", 1)[1] for _, body in transport.sent] == ["1", "2"]


async def test_each_dispatch_is_reported_once_it_counts_against_its_worker() -> None:
    """`on_dispatch` (the service announces dispatches to the other gateway replicas there) hears
    every attempt, failed ones too, after the worker's own accounting counts it."""
    transport = FakeTransport({"a": "refuse", "b": "ok"})
    pool = pool_of([("a", "refuse"), ("b", "ok")])
    heard: list[tuple[str, float, int]] = []
    forwarded = await forward(transport, pool, on_dispatch=lambda state, cost: heard.append(
        (state.name, cost, state.inflight)))
    assert forwarded.state is not None and forwarded.state.name == "b"
    assert heard == [("a", 10, 1), ("b", 10, 1)]


def test_the_stream_adapter_makes_the_wire_events() -> None:
    state = fake_state("w", "A100")
    sent: list[dict[str, Any]] = []
    listen = events.stream_listener(sent.append)
    listen(AttemptStarted(2, state))
    listen(ProgressSeen(2, step=3, steps=10, fraction=0.31234, eta_seconds=1.23456))
    listen(AttemptFailed(AttemptFailure("w", 2, FailureKind.HUNG, "no progress for 0.04s", 0.05)))  # not an event
    assert sent == [
        {"event": "assigned", "gpu_model": "a100", "gpu_name": "A100", "provider": "provider-w", "location": "rack-w",
         "worker": "w", "attempt": 2},
        {"event": "progress", "step": 3, "steps": 10, "progress": 0.3123, "eta_seconds": 1.235},
    ]
