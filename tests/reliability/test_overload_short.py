"""reliability/overload.py, short: 10x the pool's capacity for 10 s gets only 200s and 429s.

About 35 s on 2 cores (10 s of arrivals, then the accepted requests drain), and 10 s for a burst
past a worker's own queue.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from reliability.overload import OverloadConfig, run_overload, violations
from sdxlpool.testing.pool import LocalPool, Outcome, WorkerSpec, send


def test_overload_sheds_with_429_and_bounds_latency_and_memory(tmp_path: Path) -> None:
    config = OverloadConfig(seconds=10, factor=10, workers=2, max_requests=1000, queue_deadline=5,
                            backlog_seconds=3)
    summary = run_overload(config, tmp_path, say=lambda _: None)
    assert summary["sent"] >= 50, summary
    # Only 200 and 429 (with Retry-After and a JSON error code): nothing else, nothing lost.
    assert summary["other"] == 0, summary
    assert summary["ok"] > 0 and summary["rejected_429"] > 0, summary
    assert summary["ok"] + summary["rejected_429"] == summary["sent"], summary
    # Accepted requests finish within the gateway's queue deadline + worker backlog + service.
    assert summary["p99"] <= config.latency_bound + 5, summary
    assert summary["rss_peak_mib"] < config.max_rss_mib, summary
    assert violations(summary) == [], summary


def test_workers_with_full_queues_mean_429_not_502(tmp_path: Path) -> None:
    """A burst past the worker's own queue (--max-queue 2) with the gateway's default backlog_seconds."""
    workers = [WorkerSpec("w1", "A100", 0.05, ("--max-queue", "2"))]  # 10 normalised steps: 0.5 s a request
    with LocalPool(tmp_path, workers) as pool:

        async def burst() -> list[Outcome]:
            async with httpx.AsyncClient() as client:
                body = {"prompt": "burst", "steps": 40, "width": 512, "height": 512, "sampler_name": "Euler"}
                return await asyncio.gather(*(send(client, pool.url, {**body, "seed": i}, 60) for i in range(12)))

        outcomes = asyncio.run(burst())
    assert {o.kind for o in outcomes} <= {"ok", "rejected"}, [(o.status, o.code) for o in outcomes]
