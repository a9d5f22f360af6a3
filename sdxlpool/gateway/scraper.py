"""Continuous scraping of every worker's /metrics: the routing decisions' only input about load.

Every `interval` (100 ms by default) all sdxlpool-type backends are scraped concurrently, each with
its own timeout, so one slow worker never delays the others' numbers. A scrape that fails leaves
the last metrics in place to age (the routing filters treat old metrics as unknown capacity); a
worker that refuses connections is marked down at once, and a later good scrape brings it back
(the scrape is the circuit breaker's probe). Plain A1111 backends have no /metrics: their load is
what the gateway itself sent them, and their /sdapi/v1/progress is polled as a sign of life.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from sdxlpool.api.ports import METRICS_PATH
from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.worker_metrics import parse_worker_metrics

__all__ = ["scrape_forever", "scrape_once"]

log = logging.getLogger(__name__)


async def scrape_forever(pool: BackendPool, client: httpx.AsyncClient, *, interval: float, timeout: float) -> None:
    while True:
        started = time.monotonic()
        await scrape_once(pool, client, timeout=timeout)
        await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


async def scrape_once(pool: BackendPool, client: httpx.AsyncClient, *, timeout: float) -> None:
    await asyncio.gather(*(
        _scrape(state, client, timeout) if state.backend.kind == "sdxlpool" else _probe_a1111(state, client, timeout)
        for state in pool.states()
    ))


async def _probe_a1111(state: BackendState, client: httpx.AsyncClient, timeout: float) -> None:
    """A plain A1111 server has no /metrics: its load is what this gateway sent it (routing counts
    that), and /sdapi/v1/progress answering is its sign of life."""
    sent = time.monotonic()
    try:
        response = await client.get(state.backend.url + "/sdapi/v1/progress",
                                    params={"skip_current_image": "true"}, timeout=timeout)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        if isinstance(exc, httpx.ConnectError | httpx.HTTPStatusError):
            state.record_failure(time.monotonic())
        log.debug("progress probe of %s failed: %s", state.backend.name, exc)
        return
    state.scraped_at = sent  # when it was last seen alive
    state.record_success(time.monotonic())


async def _scrape(state: BackendState, client: httpx.AsyncClient, timeout: float) -> None:
    sent = time.monotonic()  # the metrics describe the worker as of about now, not as of the answer
    try:
        response = await client.get(state.backend.url + METRICS_PATH, timeout=timeout)
        response.raise_for_status()
        metrics = parse_worker_metrics(response.text)
    except (httpx.HTTPError, ValueError) as exc:
        now = time.monotonic()
        if isinstance(exc, httpx.ConnectError | httpx.HTTPStatusError):
            state.record_failure(now)  # refused or broken: down now, probed back in by later scrapes
        log.debug("scrape of %s failed: %s", state.backend.name, exc)
        return
    state.metrics = metrics
    state.scraped_at = sent
    state.record_success(time.monotonic())
