"""reliability/chaos.py, short: workers killed or hung under load, and no request lost or hung.

About 75 s on 2 cores: 15 s of load per mode, plus the pools' start-up, plus one stopped worker.

What a chaos run can guarantee, and so what is required of it:
- at least MIN_OK_RATIO (90%) of the requests sent are answered 200. The monkey faults one worker at
  a time (a killed worker is restarted, a stopped one continued, before the next event), so at most
  one of the 4 workers is down, plus in hang mode a tenth of one worker's jobs hang; a request may
  try 3 workers, so every request can be served (the measured runs answered 599 of 599). The other
  10% is margin for a loaded 2-core machine, where a healthy worker can miss the 2 s progress
  deadline and count as failed;
- no 5xx but the gateway's documented answers for failed or missing workers (docs/reference/http.md):
  502 all_attempts_failed and 503 no_backend. Any other 5xx, or an unclear answer, fails the test;
- no request lost or hung, and every 200 returns the seed its first attempt was sent, by the
  workers' own record (three requests in four send `seed: -1`).
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

MIN_OK_RATIO = 0.9
DOCUMENTED_5XX = {"502 all_attempts_failed", "503 no_backend"}


@pytest.mark.parametrize("mode", ["kill", "hang"])
def test_chaos_loses_no_request_and_keeps_seeds(mode: str, tmp_path: Path) -> None:
    summary = run_chaos(ChaosConfig(mode=mode, seconds=15, interval=(1.5, 3.0)), tmp_path, say=lambda _: None)
    assert summary["chaos_events"] >= 2, summary
    assert summary["sent"] >= 50, summary
    # Most requests served (see the module docstring), and no 5xx but the documented ones.
    assert summary["ok"] >= MIN_OK_RATIO * summary["sent"], summary
    server_errors = {key for key in summary["errors"] if key[:1] == "5"}
    assert server_errors <= DOCUMENTED_5XX, summary
    # Every request answered, 200 or a clear JSON error; none hung.
    assert summary["lost"] == 0 and summary["hung"] == 0, summary
    assert summary["unclear"] == 0 and summary["transport"] == 0, summary
    # Every 200 carries the seed all its attempts were sent, by the workers' record.
    assert summary["random_seed_sent"] >= summary["sent"] // 2, summary
    assert summary["wrong_seed"] == 0, summary
    assert summary["failed_over_seed_ok"] == summary["failed_over_ok"], summary
    # `late` (a stopped worker not given up after the progress deadline) is the next test's.
    assert not [v for v in violations(summary) if not v.startswith("late")], summary
    if mode == "hang":  # the --hang-rate worker's hung jobs were abandoned and retried elsewhere,
        assert summary["failed_over_ok"] >= 1, summary
        # and some `seed: -1` request's hung first attempt is on record: a re-drawn seed would show.
        # Whatever the load: the hang-rate worker's first job hangs, and is a `seed: -1` request (chaos.py).
        assert summary["seed_checked"] >= 1, summary


INFLIGHT = re.compile(rf"^{mn.WORKER_INFLIGHT}\s+(\S+)$", re.M)
STOPPED_SECONDS = 30


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
        deadline = time.monotonic() + 30
        while running is None and time.monotonic() < deadline:
            time.sleep(0.05)
            running = next((w for w in workers if (m := INFLIGHT.search(httpx.get(w.url + "/metrics").text))
                            and float(m.group(1)) > 0), None)
        assert running is not None, "the request did not start on a worker"
        pool.signal_worker(running, signal.SIGSTOP)
        try:
            thread.join(timeout=STOPPED_SECONDS)
        finally:
            pool.signal_worker(running, signal.SIGCONT)
            thread.join(timeout=60)
    # The worker stayed stopped 30 s. The gateway should give up on it after: a /progress poll timing out
    # (1 s) + the progress deadline (2 s) + a poll (0.5 s) + its /interrupt timing out (2 s), then run it
    # for 1 s on the other worker: about 7 s. 20 s leaves room for a loaded 2-core machine and is still
    # well before the worker comes back (30 s) or the attempt times out.
    assert answer.get("status") == 200, answer
    assert answer["attempts"] == 2 and answer["seconds"] < 20, answer
