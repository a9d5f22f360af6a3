"""Batching concurrent requests (--batch-max) on the real tiny pipeline, through real HTTP.

Requests are queued behind a long "blocker" job (so they are waiting together when the GPU thread
frees up), then the blocker is interrupted by name: what was queued with the same shape runs as one
model batch. Each batched image is compared with the same request made alone.

Tolerance: the tiny model runs in fp32 on the CPU; a batched convolution or matmul may sum in
another order than the one-image call, so pixels may differ by float rounding, which after a few
steps and the VAE is far below one 8-bit level. A wrong seed, prompt or noise row changes pixels
by tens of levels (the images of two seeds differ by > 20 on average), so a bound of 2/255 on the
largest pixel difference (and PSNR >= 45 dB) separates "the same image" from "another image" with
room on both sides.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from sdxlpool.api import metric_names as mn
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.polling import metrics, wait_for
from tests.worker.imaging import pixels
from tests.worker.test_queue_progress import Background

WAIT_MS = 400  # --batch-wait-ms of the worker here
BLOCKER = {"prompt": "blocker", "sampler_name": "Euler", "width": 256, "height": 256, "steps": 150, "seed": 1,
           "force_task_id": "blocker"}
SMALL = {"sampler_name": "Euler", "width": 64, "height": 64, "steps": 4, "cfg_scale": 5}
MAX_PIXEL_DIFF = 2  # 8-bit levels
MIN_PSNR = 45.0  # dB


@pytest.fixture(scope="module")
def batching_worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    with start_worker(tiny_model, models=[tiny_model.base], max_queue=8, batch_max=4, batch_wait_ms=WAIT_MS) as server:
        server.wait_ready()
        yield server


def test_the_worker_exports_its_batch_max(batching_worker: ServerThread) -> None:
    """sdxl_worker_batch_max = --batch-max: the gateway counts that many queued requests as one batch."""
    assert metrics(batching_worker.url)[mn.WORKER_BATCH_MAX] == 4


def _behind_blocker(url: str, bodies: list[dict]) -> list[httpx.Response]:
    """Queue `bodies` behind a running blocker, all waiting at once, then end the blocker."""
    blocker = Background(url, BLOCKER)
    wait_for(lambda: metrics(url)[mn.WORKER_INFLIGHT] == 1)
    queued = []
    for n, body in enumerate(bodies, 1):
        queued.append(Background(url, body))
        wait_for(lambda n=n: metrics(url)[mn.WORKER_QUEUE_DEPTH] == n)  # queued in this order
    assert httpx.post(url + "/sdapi/v1/interrupt", params={"id_task": "blocker"}).json() == {"interrupted": True}
    assert blocker.result().status_code == 200
    return [q.result() for q in queued]


def _solo(url: str, body: dict) -> httpx.Response:
    response = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    assert _info(response)["sdxlpool"]["batch_images"] == 1
    return response


def _info(response: httpx.Response) -> dict:
    return json.loads(response.json()["info"])


def _compare(a: httpx.Response, b: httpx.Response) -> tuple[int, float]:
    """(largest pixel difference in 8-bit levels, PSNR in dB) of the first images of two answers."""
    x = pixels(a.json()["images"][0]).astype(np.float64)
    y = pixels(b.json()["images"][0]).astype(np.float64)
    mse = float(np.mean((x - y) ** 2))
    return int(np.abs(x - y).max()), (float("inf") if mse == 0 else 10 * np.log10(255**2 / mse))


def _batch_histogram(url: str) -> tuple[float, float]:
    m = metrics(url)
    return m[f"{mn.WORKER_BATCH_IMAGES}_count"], m[f"{mn.WORKER_BATCH_IMAGES}_sum"]


def test_same_shape_requests_run_as_one_batch_and_each_equals_its_solo_image(batching_worker: ServerThread) -> None:
    url = batching_worker.url
    count_before, sum_before = _batch_histogram(url)
    same = [
        {**SMALL, "prompt": "a red cube", "seed": 11},
        {**SMALL, "prompt": "a blue sphere", "negative_prompt": "blurry", "seed": 12},
        {**SMALL, "prompt": "a [cat:dog:2] on grass", "seed": 13, "subseed": 7, "subseed_strength": 0.3},
    ]
    other_size = {**SMALL, "width": 72, "prompt": "a red cube", "seed": 11}
    other_steps = {**SMALL, "steps": 3, "prompt": "a red cube", "seed": 11}
    answers = _behind_blocker(url, [same[0], other_size, same[1], other_steps, same[2]])
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    batched = [answers[0], answers[2], answers[4]]
    assert [_info(a)["sdxlpool"]["batch_images"] for a in answers] == [3, 1, 3, 1, 3]
    assert [_info(a)["seed"] for a in batched] == [11, 12, 13]
    assert all(_info(a)["sdxlpool"]["steps_done"] == 4 and not _info(a)["interrupted"] for a in batched)
    # The histogram saw the blocker (1), three requests at 3 and two alone.
    count, total = _batch_histogram(url)
    assert (count - count_before, total - sum_before) == (6, 1 + 3 * 3 + 1 + 1)

    for body, answer in zip(same, batched, strict=True):
        alone = _solo(url, body)
        largest, psnr = _compare(answer, alone)
        assert largest <= MAX_PIXEL_DIFF and psnr >= MIN_PSNR, (body, largest, psnr)
        assert _info(answer)["infotexts"] == _info(alone)["infotexts"]
    # ... and the batch's rows are not one another's images.
    assert _compare(batched[0], batched[1])[0] > 20 and _compare(batched[1], batched[2])[0] > 20


def test_refiner_and_ancestral_sampler_batches_equal_their_solo_images(batching_worker: ServerThread) -> None:
    """The refiner's pass batched too (its own conditioning per row), and an ancestral sampler's
    step noise drawn per row from each request's own generator."""
    url = batching_worker.url
    refined = {**SMALL, "sampler_name": "Euler a", "refiner_checkpoint": "tiny/refiner", "refiner_switch_at": 0.5}
    bodies = [{**refined, "prompt": "a red cube", "seed": 41}, {**refined, "prompt": "a green tree", "seed": 42}]
    answers = _behind_blocker(url, bodies)
    assert [_info(a)["sdxlpool"]["batch_images"] for a in answers] == [2, 2]
    for body, answer in zip(bodies, answers, strict=True):
        largest, psnr = _compare(answer, _solo(url, body))
        assert largest <= MAX_PIXEL_DIFF and psnr >= MIN_PSNR, (body, largest, psnr)


def test_a_lone_request_waits_for_partners_at_most_the_bound(batching_worker: ServerThread) -> None:
    response = _solo(batching_worker.url, {**SMALL, "prompt": "alone", "seed": 5})
    waited = _info(response)["sdxlpool"]["queue_seconds"]
    assert WAIT_MS / 1000 - 0.01 <= waited <= WAIT_MS / 1000 + 1.0, waited  # it waited, and not much longer


def test_interrupting_one_member_stops_only_it_and_metrics_follow_the_batch(batching_worker: ServerThread) -> None:
    url = batching_worker.url
    steps = 40
    a = {**SMALL, "width": 256, "height": 256, "steps": steps, "prompt": "first", "seed": 21,
         "force_task_id": "member-a"}
    b = {**SMALL, "width": 256, "height": 256, "steps": steps, "prompt": "second", "seed": 22,
         "force_task_id": "member-b"}
    cost = steps * 256 * 256 / 1024**2
    blocker = Background(url, BLOCKER)
    wait_for(lambda: metrics(url)[mn.WORKER_INFLIGHT] == 1)
    first, second = Background(url, a), None
    wait_for(lambda: metrics(url)[mn.WORKER_QUEUE_DEPTH] == 1)
    second = Background(url, b)
    wait_for(lambda: metrics(url)[mn.WORKER_QUEUE_DEPTH] == 2)
    queued = metrics(url)
    assert httpx.post(url + "/sdapi/v1/interrupt", params={"id_task": "blocker"}).json() == {"interrupted": True}
    assert blocker.result().status_code == 200
    assert queued[mn.WORKER_PENDING_STEPS] >= 2 * cost  # both queued jobs, whole

    # Both run together: two in flight, the pending steps of both, falling step by step.
    running = wait_for(lambda: (m := metrics(url))[mn.WORKER_INFLIGHT] == 2 and 0 < m[mn.WORKER_PENDING_STEPS] < 2 * cost
                       and m)
    assert running[mn.WORKER_QUEUE_DEPTH] == 0
    progress = httpx.get(url + "/sdapi/v1/progress").json()
    assert progress["state"]["job"] == "member-a" and 0 < progress["progress"] < 1  # the batch's head
    named = httpx.get(url + "/sdapi/v1/progress", params={"id_task": "member-b"}).json()  # another member's
    assert named["state"]["job"] == "member-b" and 0 < named["progress"] < 1
    # The member is stopped by name; the other one goes on to its last step.
    assert httpx.post(url + "/sdapi/v1/interrupt", params={"id_task": "member-a"}).json() == {"interrupted": True}
    stopped, finished = first.result(), second.result()
    assert stopped.status_code == 200 and finished.status_code == 200
    assert _info(stopped)["interrupted"] is True and 0 < _info(stopped)["sdxlpool"]["steps_done"] < steps
    assert len(stopped.json()["images"]) == 1  # its image so far, as alone
    assert _info(finished)["interrupted"] is False and _info(finished)["sdxlpool"]["steps_done"] == steps
    assert _info(finished)["sdxlpool"]["batch_images"] == 2
    after = metrics(url)
    assert after[mn.WORKER_PENDING_STEPS] == 0 and after[mn.WORKER_INFLIGHT] == 0
    assert after[mn.WORKER_STEP_SECONDS] > 0
    largest, psnr = _compare(finished, _solo(url, {**b, "force_task_id": None}))
    assert largest <= MAX_PIXEL_DIFF and psnr >= MIN_PSNR, (largest, psnr)


def test_batching_is_off_by_default(worker: ServerThread) -> None:
    """The shared worker (no --batch-max): queued same-shape requests run one by one."""
    url = worker.url
    bodies = [{**SMALL, "prompt": "x", "seed": 31}, {**SMALL, "prompt": "y", "seed": 32}]
    answers = _behind_blocker(url, bodies)
    assert [_info(a)["sdxlpool"]["batch_images"] for a in answers] == [1, 1]
