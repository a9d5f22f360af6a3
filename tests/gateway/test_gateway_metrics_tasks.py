"""sdxl_gateway_asyncio_tasks: the event loop's live tasks, read at scrape time (from /metrics' thread)."""

from __future__ import annotations

import asyncio
import re

from prometheus_client import generate_latest

from sdxlpool.api import metric_names as mn
from sdxlpool.gateway.metrics import GatewayMetrics
from sdxlpool.gateway.pool import BackendPool

TASKS = re.compile(rb"^sdxl_gateway_asyncio_tasks\s+(\S+)$", re.M)


def tasks_gauge(metrics: GatewayMetrics) -> float:
    match = TASKS.search(generate_latest(metrics.registry))
    assert match, f"{mn.GATEWAY_ASYNCIO_TASKS} missing"
    return float(match.group(1))


async def test_counts_the_loops_tasks_when_scraped_from_another_thread() -> None:
    metrics = GatewayMetrics(BackendPool())  # as in the app's lifespan: inside the running loop
    before = await asyncio.to_thread(tasks_gauge, metrics)
    sleepers = [asyncio.create_task(asyncio.sleep(10)) for _ in range(5)]
    try:
        assert await asyncio.to_thread(tasks_gauge, metrics) == before + 5
    finally:
        for task in sleepers:
            task.cancel()
        await asyncio.gather(*sleepers, return_exceptions=True)
    assert await asyncio.to_thread(tasks_gauge, metrics) == before


def test_reads_zero_without_an_event_loop() -> None:
    assert tasks_gauge(GatewayMetrics(BackendPool())) == 0
