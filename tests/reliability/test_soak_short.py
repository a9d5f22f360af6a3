"""reliability/soak.py, short: 1000 requests through the gateway, and nothing in it grows.

About 15 s on 2 cores. The slope bounds are looser than the full run's (10 000 requests): over 800
measured requests the connection pools still settle (fds measured up to 1.5 per 1000), the samples
catch a varying number of in-flight requests' tasks (up to 6 per 1000), and RSS moves by a few
hundred KiB (0.1-0.15 MiB per 1000). A leak of one fd or task per 100 requests still fails, and so
does any task left behind once the gateway is idle again.
"""

from __future__ import annotations

from pathlib import Path

from reliability.soak import SoakConfig, run_soak, violations
from sdxlpool.api import metric_names as mn


def test_soak_has_no_growth_in_memory_fds_or_tasks(tmp_path: Path) -> None:
    config = SoakConfig(requests=1000, concurrency=8, every=50, warmup=0.2, max_seconds=120,
                        max_rss_slope=4.0, max_fd_slope=10.0, max_task_slope=30.0)
    summary = run_soak(config, tmp_path, say=lambda _: None)
    assert summary["ok"] == summary["sent"] == 1000, summary
    assert summary["samples"] >= 10, summary
    assert summary["tasks_per_1000"] is not None, f"{mn.GATEWAY_ASYNCIO_TASKS} missing from the gateway's /metrics"
    assert violations(summary) == [], summary
