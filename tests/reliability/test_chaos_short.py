"""reliability/chaos.py, short: workers killed or hung under load, and no request lost or hung.

About 75 s on 2 cores: 15 s of load per mode, plus the pools' start-up, plus one stopped worker.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from reliability.chaos import ChaosConfig, run_chaos, violations
from sdxlpool.api import metric_names as mn
from sdxlpool.testing.pool import LocalPool, WorkerSpec


@pytest.mark.parametrize("mode", ["kill", "hang"])
def test_chaos_loses_no_request_and_keeps_seeds(mode: str, tmp_path: Path) -> None:
    summary = run_chaos(ChaosConfig(mode=mode, seconds=15, interval=(1.5, 3.0)), tmp_path, say=lambda _: None)
    assert summary["chaos_events"] >= 2, summary
    assert summary["sent"] >= 50, summary
    # Every request answered, 200 or a clear JSON error; none hung; 200s carry the seed they were sent.
    assert summary["lost"] == 0 and summary["hung"] == 0, summary
    assert summary["unclear"] == 0 and summary["transport"] == 0, summary
    assert summary["wrong_seed"] == 0, summary
    assert summary["failed_over_seed_ok"] == summary["failed_over_ok"], summary
    # `late` (a stopped worker not given up after the progress deadline) is the next test's.
    assert not [v for v in violations(summary) if not v.startswith("late")], summary
    if mode == "hang":  # the --hang-rate worker's hung jobs were abandoned and retried elsewhere
        assert summary["failed_over_ok"] >= 1, summary


INFLIGHT = re.compile(rf"^{mn.WORKER_INFLIGHT}\s+(\S+)$", re.M)


def test_a_stopped_worker_is_given_up_after_the_progress_deadline(tmp_path: Path) -> None:
    """SIGSTOP the worker running our request: the gateway fails over after --progress-deadline (2 s)."""
    workers = [WorkerSpec(f"w{i + 1}", "A100", 0.1) for i in range(2)]  # 10 normalised steps: 1 s a request
    with LocalPool(tmp_path, workers, gateway_args=("--progress-deadline", "2")) as pool:
        answer: dict[str, object] = {}

        def post() -> None:
            started = time.monotonic()
            response = httpx.post(pool.url + "/sdapi/v1/txt2img", timeout=60, json={
                "prompt": "stop", "steps": 40, "width": 512, "height": 512, "sampler_name": "Euler", "seed": 7})
            answer.update(status=response.status_code, seconds=time.monotonic() - started,
                          attempts=int(response.headers.get("X-SDXL-Attempts") or 0))

        thread = threading.Thread(target=post)
        thread.start()
        running = None
        for _ in range(50):
            time.sleep(0.05)
            running = next((w for w in workers if (m := INFLIGHT.search(httpx.get(w.url + "/metrics").text))
                            and float(m.group(1)) > 0), None)
            if running:
                break
        assert running is not None, "the request did not start on a worker"
        pool.signal_worker(running, signal.SIGSTOP)
        try:
            thread.join(timeout=12)
        finally:
            pool.signal_worker(running, signal.SIGCONT)
            thread.join(timeout=60)
    # The worker stayed stopped 12 s. The gateway should give up on it after: a /progress poll timing out
    # (1 s) + the progress deadline (2 s) + a poll (0.5 s) + its /interrupt timing out (2 s), then run it
    # for 1 s on the other worker: about 7 s, 9.5 s with slack.
    assert answer.get("status") == 200, answer
    assert answer["attempts"] == 2 and answer["seconds"] < 9.5, answer
