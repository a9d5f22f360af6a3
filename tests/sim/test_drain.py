"""A stopped worker drains: on SIGTERM it refuses new connections and finishes every job it holds,
running and queued, before it exits 0 (a scale-down loses nothing). A real `sim-worker` process: the
worker's own app and serving, a clock instead of a GPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.ports import connection_refused, free_port
from tests.sim.conftest import Background, metrics, running_sim, wait_for

JOBS = 4
STEP_SECONDS = 0.1
STEPS = 20  # 1024x1024: 20 normalised steps, 2 s a job; the last of 4 ends ~8 s after the first starts


def test_sigterm_finishes_the_running_and_queued_jobs_then_exits_0(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "sim.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sdxlpool.sim", "--gpu-model", "A100", "--step-seconds", str(STEP_SECONDS),
             "--port", str(port), "--no-warmup", "--drain-seconds", "60"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "SDXLPOOL_LOG_LEVEL": "INFO"})
    try:
        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                return False

        wait_for(ready, timeout=20, interval=0.05)
        body = {"prompt": "drain", "steps": STEPS, "width": 1024, "height": 1024}
        requests = [Background(url, body, timeout=60) for _ in range(JOBS)]
        # All of them on the worker: one running, the others queued behind it.
        wait_for(lambda: metrics(url).get(mn.WORKER_QUEUE_DEPTH) == JOBS - 1, timeout=10)

        process.send_signal(signal.SIGTERM)
        wait_for(lambda: connection_refused(port), timeout=5)  # no new connection, while the jobs are still being made
        assert process.poll() is None and not any(r.response for r in requests[1:])

        answers = [r.result(timeout=60) for r in requests]
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert [a.status_code for a in answers] == [200] * JOBS, log.read_text()
    assert all(a.json()["images"] for a in answers)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_a_draining_worker_says_so_on_readyz() -> None:
    with running_sim() as server:
        assert httpx.get(server.url + "/readyz").status_code == 200
        server.server.config.app.state.draining = True  # what serve() sets when SIGTERM arrives
        response = httpx.get(server.url + "/readyz")
    assert response.status_code == 503
    assert response.json() == {"error": "not_ready", "detail": "draining: finishing 0 job(s) before exit"}
