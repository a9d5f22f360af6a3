"""Admission: per-client token buckets, and the gateway queue with 429 + Retry-After when saturated."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.gateway.admission import RateLimiter, TokenBucket, TooBusy
from tests.gateway.conftest import body, start_gateway, write_backends
from tests.polling import metrics, wait_for


def test_token_bucket_grants_a_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token every 0.5 s
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0


def test_rate_limiter_is_per_client_and_off_at_zero() -> None:
    limiter = RateLimiter(per_minute=60, burst=1)
    limiter.check("a", 0.0)
    limiter.check("b", 0.0)  # another client has its own bucket
    with pytest.raises(TooBusy) as caught:
        limiter.check("a", 0.1)
    assert caught.value.code == "rate_limited" and caught.value.retry_after == 1
    RateLimiter(per_minute=0, burst=1).check("a", 0.0)  # no limit configured: never raises


@pytest.mark.parametrize("sims", [[("fast", 0.01)]], indirect=True)
def test_rate_limited_client_gets_429_with_retry_after(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, rate_limit_per_minute=30, rate_limit_burst=2) as gateway:
        gateway.wait_ready()
        codes = [httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(steps=2), timeout=30) for _ in range(3)]
        assert [r.status_code for r in codes] == [200, 200, 429]
        assert codes[2].json()["error"] == "rate_limited"
        assert int(codes[2].headers["Retry-After"]) == 2  # 30 per minute: a token every 2 s
        assert 'outcome="rate_limited"' in httpx.get(gateway.url + "/metrics").text


@pytest.mark.parametrize("sims", [[("slow", 0.5)]], indirect=True)
def test_saturation_queues_briefly_then_sheds_with_429(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, backlog_seconds=1.0, queue_size=1, queue_deadline=3.0) as gateway:
        gateway.wait_ready()
        results: dict[str, httpx.Response] = {}

        def send(name: str, seed: int) -> None:
            results[name] = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=seed), timeout=60)

        first = threading.Thread(target=send, args=("first", 1))  # 10 steps x 0.5 s: the worker is full
        first.start()
        wait_for(lambda: metrics(sims[0].url).get(mn.WORKER_INFLIGHT) == 1, timeout=20)
        waiting = threading.Thread(target=send, args=("waiting", 2))  # waits in the gateway queue (3 s deadline)
        waiting.start()
        wait_for(lambda: metrics(gateway.url).get(mn.GATEWAY_QUEUE_DEPTH) == 1, timeout=20)
        started = time.monotonic()
        send("overflow", 3)  # the queue (size 1) is taken: shed at once, not after the queue deadline
        assert time.monotonic() - started < 1.5
        waiting.join(30)
        first.join(60)
    assert results["first"].status_code == 200
    for name in ("overflow", "waiting"):
        response = results[name]
        assert response.status_code == 429, (name, response.text)
        assert response.json()["error"] == "saturated"
        # Retry-After from the live drain rate: ~5 s of queued work at 2 normalised steps per second on an
        # idle machine; a loaded one slows the sim's steps, and the measured rate with them (10 s seen).
        assert 2 <= int(response.headers["Retry-After"]) <= 20


def _workers(pool, *gpus: str) -> None:
    """The pool now holds one ready (scraped) worker of each GPU model in `gpus`."""
    from sdxlpool.gateway.backends import Backend
    from sdxlpool.gateway.worker_metrics import WorkerMetrics

    pool.update([Backend(name=f"{gpu}-1", url=f"http://{gpu}", gpu=gpu) for gpu in gpus])
    for state in pool.states():
        state.metrics = WorkerMetrics(queue_depth=0, inflight=0, pending_steps=0, step_seconds=0.01, ready=True)
        state.scraped_at = time.monotonic()


def test_a_request_for_a_cold_pool_model_waits_is_told_once_and_goes_when_a_worker_is_ready() -> None:
    """Scale from zero in the admission alone: an H100 request (the pool has H100s, none ready)
    waits, counted as demand, is told once; an A100 request meanwhile goes straight through; when
    an H100 worker is ready it goes; the queue bound holds; past the deadline NoWorkerStarted."""
    import asyncio

    from sdxlpool.gateway.admission import Admission, NoWorkerStarted
    from sdxlpool.gateway.demand import DemandTracker
    from sdxlpool.gateway.pool import BackendPool

    async def scenario() -> None:
        pool = BackendPool()
        _workers(pool, "A100")
        demand = DemandTracker(60)
        admission = Admission(pool, backlog_seconds=60, queue_size=1, queue_deadline=0.2, demand=demand,
                              pool_gpus=("a100", "h100"), cold_start_deadline=30)
        told: list[tuple[tuple[str, ...], float]] = []
        cold = asyncio.create_task(admission.admit(("h100",), cost=8.0,
                                                   on_starting=lambda models, s: told.append((models, s))))
        while not admission.waiting:
            await asyncio.sleep(0.01)
        assert demand.waiting_steps() == {("h100",): 8.0}
        assert await admission.admit(("a100",)) == 0.0  # not held up behind the cold one
        with pytest.raises(TooBusy):  # the queue (size 1) is full: bounded
            await admission.admit(("h100",))
        await asyncio.sleep(0.3)  # past queue_deadline: still waiting, not "saturated"
        assert not cold.done() and [models for models, _ in told] == [("h100",)]
        _workers(pool, "A100", "H100")
        waited = await asyncio.wait_for(cold, 5)
        assert waited >= 0.3 and len(told) == 1 and demand.waiting_count == 0
        # Not a model of the pool: no wait (routing answers 503 at once).
        assert await asyncio.wait_for(admission.admit(("l40s",)), 1) == 0.0
        admission.cold_start_deadline = 0.2
        _workers(pool, "A100")
        with pytest.raises(NoWorkerStarted) as caught:
            await admission.admit(("h100",))
        assert caught.value.status == 503 and caught.value.code == "no_worker_started"
        assert "H100" in caught.value.detail and demand.waiting_count == 0

    asyncio.run(scenario())
