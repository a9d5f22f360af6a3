"""The job queue seen from outside: metrics before/during/after, the queue bound, progress,
interrupt, client disconnects, and the event loop staying responsive while a job runs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.polling import metrics, wait_for  # noqa: F401 - shared by the tests here
from tests.worker.imaging import decode

# Long enough on the tiny model to observe mid-job (a few seconds on 2 CPU cores).
LONG_JOB = {"prompt": "slow", "sampler_name": "Euler", "width": 256, "height": 256, "steps": 30, "seed": 1}


@pytest.fixture(scope="module")
def busy_worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    with start_worker(tiny_model, models=[tiny_model.base], max_queue=1) as server:
        server.wait_ready()
        yield server


class Background:
    """A txt2img request running in a thread, so the test can look at the worker meanwhile."""

    def __init__(self, url: str, body: dict, timeout: float = 120) -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

        def run() -> None:
            try:
                self.response = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - inspected by the test
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 120) -> httpx.Response:
        self.thread.join(timeout)
        assert self.response is not None, self.error
        return self.response


def job_cost(body: dict) -> float:
    return body["steps"] * body["width"] * body["height"] / 1024**2


def test_metrics_before_during_and_after_jobs_and_queue_bound(busy_worker: ServerThread) -> None:
    url = busy_worker.url
    before = metrics(url)
    assert before[mn.WORKER_READY] == 1
    assert before[mn.WORKER_QUEUE_DEPTH] == 0 and before[mn.WORKER_INFLIGHT] == 0
    assert before[mn.WORKER_PENDING_STEPS] == 0
    assert before[mn.WORKER_STEP_SECONDS] > 0  # measured by the start-up warm-up
    info = [k for k in before if k.startswith(f"{mn.WORKER_INFO}{{")]
    assert info == [f"{mn.WORKER_INFO}{{gpu_model=rtx-3090,location=Lab, 127.0.0.1,model=tiny/base [" +
                    info[0].split("[")[1]]

    first = Background(url, LONG_JOB)
    during = wait_for(lambda: (m := metrics(url))[mn.WORKER_INFLIGHT] == 1 and m)
    assert during[mn.WORKER_QUEUE_DEPTH] == 0
    assert 0 < during[mn.WORKER_PENDING_STEPS] <= job_cost(LONG_JOB)
    # Pending work shrinks with every denoising step, not only when the job ends.
    later = wait_for(lambda: (m := metrics(url))[mn.WORKER_PENDING_STEPS] < during[mn.WORKER_PENDING_STEPS] and m)
    assert later[mn.WORKER_INFLIGHT] == 1

    second_body = {**LONG_JOB, "steps": 10, "seed": 2}
    second = Background(url, second_body)
    queued = wait_for(lambda: (m := metrics(url))[mn.WORKER_QUEUE_DEPTH] == 1 and m)
    running_left = queued[mn.WORKER_PENDING_STEPS] - job_cost(second_body)
    assert 0 <= running_left <= job_cost(LONG_JOB)

    # max_queue=1: a third request while one waits is turned away, with a hint when to retry.
    rejected = httpx.post(url + "/sdapi/v1/txt2img", json=LONG_JOB, timeout=10)
    assert rejected.status_code == 503
    assert rejected.json()["error"] == "queue_full"
    assert int(rejected.headers["Retry-After"]) >= 1

    assert first.result().status_code == 200 and second.result().status_code == 200
    after = metrics(url)
    assert after[mn.WORKER_QUEUE_DEPTH] == 0 and after[mn.WORKER_INFLIGHT] == 0
    assert after[mn.WORKER_PENDING_STEPS] == 0
    outcome = f"{mn.WORKER_REQUESTS}_total{{outcome=%s}}"
    assert after[outcome % "success"] - before[outcome % "success"] == 2
    assert after[outcome % "rejected"] - before[outcome % "rejected"] == 1
    assert after[f"{mn.WORKER_INFERENCE_SECONDS}_count"] - before[f"{mn.WORKER_INFERENCE_SECONDS}_count"] == 2


def test_progress_and_fast_endpoints_while_generating(busy_worker: ServerThread) -> None:
    url = busy_worker.url
    idle = httpx.get(url + "/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0

    job = Background(url, LONG_JOB)
    with httpx.Client(base_url=url, timeout=10) as client:
        seen = wait_for(lambda: (p := client.get("/sdapi/v1/progress").json())["state"]["sampling_step"] >= 2 and p)
        assert 0 < seen["progress"] < 1 and seen["eta_relative"] > 0
        assert seen["state"]["sampling_steps"] == LONG_JOB["steps"]
        assert decode(seen["current_image"]).size == (256 // 8, 256 // 8)  # latent-resolution preview
        skipped = client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
        assert skipped["current_image"] is None

        # The event loop never waits for inference: these answer within 50 ms mid-job.
        slowest = {}
        for path in ("/metrics", "/healthz", "/sdapi/v1/progress?skip_current_image=true"):
            timings = []
            for _ in range(10):
                started = time.perf_counter()
                assert client.get(path).status_code == 200
                timings.append(time.perf_counter() - started)
            slowest[path] = max(timings)
        assert job.thread.is_alive(), "the job ended before the measurements: make LONG_JOB longer"
        assert all(t < 0.05 for t in slowest.values()), slowest
    assert job.result().status_code == 200
    assert httpx.get(url + "/sdapi/v1/progress").json()["progress"] == 0


def test_progress_names_the_job_and_counts_client_steps(busy_worker: ServerThread) -> None:
    """`force_task_id` names the job in /progress (the gateway follows its own attempt by it), and a
    second-order sampler (two denoising iterations per step) still counts the steps asked for."""
    url = busy_worker.url
    body = {**LONG_JOB, "sampler_name": "DPM++ SDE Karras", "steps": 12, "force_task_id": "client-7"}
    job = Background(url, body)
    seen = []
    with httpx.Client(base_url=url, timeout=10) as client:
        def sample() -> bool:
            state = client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()["state"]
            if state["job"] == "client-7":
                seen.append((state["sampling_step"], state["sampling_steps"]))
            return not job.thread.is_alive()
        wait_for(sample, timeout=120, interval=0.02)
    assert job.result().status_code == 200
    assert seen, "never saw the job running"
    assert {steps for _, steps in seen} == {12}
    assert all(0 <= step <= 12 for step, _ in seen) and max(step for step, _ in seen) >= 6


def test_interrupt_returns_the_image_so_far(busy_worker: ServerThread) -> None:
    url = busy_worker.url
    assert httpx.post(url + "/sdapi/v1/interrupt").json() == {"interrupted": False}  # nothing running
    before = metrics(url)
    job = Background(url, {**LONG_JOB, "steps": 60})
    wait_for(lambda: httpx.get(url + "/sdapi/v1/progress").json()["state"]["sampling_step"] >= 2)
    assert httpx.post(url + "/sdapi/v1/interrupt").json() == {"interrupted": True}
    response = job.result()
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert info["interrupted"] is True
    assert 2 <= info["sdxlpool"]["steps_done"] < 60
    assert decode(response.json()["images"][0]).size == (256, 256)
    after = metrics(url)
    key = f"{mn.WORKER_REQUESTS}_total{{outcome=interrupted}}"
    assert after[key] - before[key] == 1
    assert after[mn.WORKER_PENDING_STEPS] == 0


def test_skip_ends_the_batch_and_the_next_batch_runs(busy_worker: ServerThread) -> None:
    """A1111's Skip on the diffusers engine: the running batch stops (its image is decoded from where
    it got to), the next `n_iter` batch runs all its steps, and the job is not counted interrupted."""
    url = busy_worker.url
    body = {**LONG_JOB, "steps": 20, "n_iter": 2, "force_task_id": "two"}
    job = Background(url, body)
    wait_for(lambda: (s := httpx.get(url + "/sdapi/v1/progress").json()["state"])["job"] == "two"
             and s["job_no"] == 0 and s["sampling_step"] >= 2)
    assert httpx.post(url + "/sdapi/v1/skip", params={"id_task": "two"}).json() == {"skipped": True}
    response = job.result()
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert len(response.json()["images"]) == 2 and info["interrupted"] is False
    assert 20 + 2 <= info["sdxlpool"]["steps_done"] < 40


def test_a_client_that_goes_away_loses_its_queue_place(busy_worker: ServerThread) -> None:
    url = busy_worker.url
    running = Background(url, LONG_JOB)
    wait_for(lambda: metrics(url)[mn.WORKER_INFLIGHT] == 1)
    impatient = Background(url, {**LONG_JOB, "seed": 9}, timeout=0.5)  # gives up while queued
    impatient.thread.join(10)
    assert isinstance(impatient.error, httpx.TimeoutException)
    wait_for(lambda: metrics(url)[mn.WORKER_QUEUE_DEPTH] == 0)
    assert metrics(url)[mn.WORKER_INFLIGHT] == 1  # the first job is unaffected
    assert running.result().status_code == 200
