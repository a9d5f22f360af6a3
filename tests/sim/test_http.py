"""The sim-worker's HTTP API through a real server: what a gateway sees must be what a real worker shows.

Timing follows the model, metrics have the real worker's names and move the same way (pending steps
fall during a job), the queue bound answers 503, progress and interrupt work, responses have the
A1111 shape with the same info, identical requests give identical images, and `image_bytes` pads
PNGs that still decode.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sdxlpool.api import metric_names as mn
from sdxlpool.worker.samplers import SAMPLERS, SCHEDULES
from tests.conftest import ServerThread
from tests.sim.conftest import Background, info_of, metrics, running_sim, wait_for

# The timing sim's model: large enough that a loaded 2-core machine's scheduling hiccups (tens of
# milliseconds) stay within the bounds below, small enough that a wrong step count still falls out.
STEP = 0.05  # seconds per normalised step
OVERHEAD = 0.1
HICCUP = 0.05  # absolute slack on an upper bound: sleeps overshoot under load, never undershoot


@pytest.fixture(scope="module")
def timed_sim() -> Iterator[ServerThread]:
    with running_sim(step_seconds=STEP, overhead_seconds=OVERHEAD) as server:
        yield server


@pytest.fixture(scope="module")
def fast_sim() -> Iterator[ServerThread]:
    """No delay at all: for the shape of responses."""
    with running_sim(step_seconds=0.0, default_width=256, default_height=256) as server:
        yield server


def png(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def colour(b64: str) -> tuple[int, int, int]:
    return png(b64).convert("RGB").getpixel((0, 0))


@pytest.mark.parametrize(("body", "iterations", "normalised"), [
    ({"sampler_name": "Euler", "steps": 20}, 20, 20.0),  # 1024x1024: one normalised step per step
    ({"sampler_name": "Euler", "steps": 20, "width": 512, "height": 512, "batch_size": 2, "n_iter": 2}, 40, 20.0),
    ({"sampler_name": "Heun", "steps": 10}, 19, 19.0),  # second order: 2 x steps - 1 iterations
], ids=["1024", "512-batch-2x2", "heun"])
def test_a_request_takes_the_modelled_time(timed_sim: ServerThread, body: dict, iterations: int,
                                           normalised: float) -> None:
    expected = OVERHEAD + normalised * STEP
    started = time.perf_counter()
    response = httpx.post(timed_sim.url + "/sdapi/v1/txt2img", json={"prompt": "timed", "seed": 1, **body},
                          timeout=30)
    wall = time.perf_counter() - started
    assert response.status_code == 200, response.text
    placement = info_of(response)["sdxlpool"]
    assert placement["steps_done"] == iterations
    assert expected * 0.7 <= placement["inference_seconds"] <= expected * 1.3 + HICCUP
    assert expected * 0.7 <= wall <= expected * 1.3 + 0.3  # + HTTP and PNG work
    # The worker's own estimate follows the model: step_seconds plus the overhead spread over a job's
    # steps (the most for the short warm-up it started from).
    step_seconds = metrics(timed_sim.url)[mn.WORKER_STEP_SECONDS]
    assert STEP * 0.7 <= step_seconds <= (STEP + OVERHEAD / 2) * 1.3


def init_image(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


@pytest.mark.parametrize(("path", "body", "iterations", "normalised", "size"), [
    # img2img runs only its denoised steps, at the init image's size when none is asked for
    ("img2img", {"init_images": [init_image(512, 512)], "denoising_strength": 0.5, "steps": 20}, 10, 2.5,
     (512, 512)),
    ("img2img", {"init_images": [init_image(64, 64)], "denoising_strength": 0.25, "steps": 20, "width": 1024,
                 "height": 512}, 5, 2.5, (1024, 512)),
    # hires fix: all first-pass steps at 512x512, then the denoised part of the second pass at 1024x1024
    ("txt2img", {"enable_hr": True, "hr_scale": 2, "denoising_strength": 0.5, "steps": 10, "width": 512,
                 "height": 512}, 15, 7.5, (1024, 1024)),
    ("txt2img", {"enable_hr": True, "hr_resize_x": 768, "hr_second_pass_steps": 4, "denoising_strength": 1.0,
                 "steps": 10, "width": 512, "height": 512}, 14, 2.5 + 4 * 0.5625, (768, 768)),
], ids=["img2img-init-size", "img2img-sized", "hires-scale", "hires-resize"])
def test_img2img_and_hires_take_their_modelled_time_at_their_size(
        timed_sim: ServerThread, path: str, body: dict, iterations: int, normalised: float,
        size: tuple[int, int]) -> None:
    expected = OVERHEAD + normalised * STEP
    response = httpx.post(timed_sim.url + f"/sdapi/v1/{path}",
                          json={"prompt": "timed", "seed": 1, "sampler_name": "Euler", **body}, timeout=30)
    assert response.status_code == 200, response.text
    placement = info_of(response)["sdxlpool"]
    assert placement["steps_done"] == iterations
    assert expected * 0.7 <= placement["inference_seconds"] <= expected * 1.3 + HICCUP
    assert png(response.json()["images"][0]).size == size


def test_img2img_images_follow_the_init_image(fast_sim: ServerThread) -> None:
    """The same upload gives the same image on any sim (as the same seed does on real workers); another
    upload, another image."""
    def image(upload: str) -> tuple[int, int, int]:
        response = httpx.post(fast_sim.url + "/sdapi/v1/img2img", json={
            "prompt": "p", "seed": 3, "steps": 4, "init_images": [upload]}, timeout=30)
        assert response.status_code == 200, response.text
        return colour(response.json()["images"][0])

    red, blue = init_image(64, 64), init_image(64, 64, (0, 0, 200))
    assert image(red) == image(red) != image(blue)


def test_an_image_that_is_not_the_simulators_own_is_encoded_as_a_real_png() -> None:
    """What the extras routes hand the engine (the upload, resized: a PIL image) keeps its size and
    pixels, with the infotext."""
    from sdxlpool.sim import SimEngine, SimSettings

    upload = Image.new("RGB", (48, 32), (1, 2, 3))
    encoded = png(SimEngine(SimSettings(gpu_model="A100", step_seconds=0.0)).encode_png(upload, "Steps: 2"))
    assert encoded.size == (48, 32) and encoded.convert("RGB").getpixel((5, 5)) == (1, 2, 3)
    assert encoded.info["parameters"] == "Steps: 2"


def test_the_response_has_the_real_workers_shape(fast_sim: ServerThread) -> None:
    body = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 42, "steps": 4, "batch_size": 2,
            "sampler_name": "DPM++ 2M Karras", "cfg_scale": 5, "some_extension_field": 1}
    response = httpx.post(fast_sim.url + "/sdapi/v1/txt2img", json=body, timeout=30)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"images", "parameters", "info"}
    assert data["parameters"]["prompt"] == "a lighthouse"
    info = info_of(response)
    assert {"seed", "all_seeds", "prompt", "negative_prompt", "sampler_name", "steps", "cfg_scale", "width",
            "height", "sd_model_name", "infotexts", "sdxlpool"} <= set(info)
    assert info["all_seeds"] == [42, 43]
    assert (info["sampler_name"], info["scheduler"], info["width"]) == ("DPM++ 2M", "Karras", 256)
    assert info["sd_model_name"] == "sim-sdxl-base"
    assert info["interrupted"] is False
    placement = info["sdxlpool"]
    assert {k: placement[k] for k in ("gpu_model", "provider", "location")} == {
        "gpu_model": "a100", "provider": "Sim Provider", "location": "Lab, 127.0.0.1"}
    assert placement["worker"].startswith("sim-") and placement["ignored"] == ["some_extension_field"]
    assert placement["inference_seconds"] >= 0 and placement["queue_seconds"] >= 0
    assert info["infotexts"][0].startswith("a lighthouse\nNegative prompt: fog\nSteps: 4, Sampler: DPM++ 2M, "
                                           "Schedule type: Karras, CFG scale: 5, Seed: 42, Size: 256x256")
    assert "Model: sim-sdxl-base" in info["infotexts"][0] and "Batch pos: 1" in info["infotexts"][1]
    for b64, infotext in zip(data["images"], info["infotexts"], strict=True):
        image = png(b64)
        assert image.size == (256, 256)
        assert image.info["parameters"] == infotext  # A1111's PNG Info
    assert colour(data["images"][0]) != colour(data["images"][1])  # seed 42 and seed 43

    unsent = httpx.post(fast_sim.url + "/sdapi/v1/txt2img", json={"steps": 2, "send_images": False}, timeout=30)
    assert unsent.json()["images"] == []


def test_identical_requests_give_identical_images(fast_sim: ServerThread) -> None:
    def make(**changes) -> str:
        body = {"prompt": "same", "seed": 7, "steps": 3, **changes}
        return httpx.post(fast_sim.url + "/sdapi/v1/txt2img", json=body, timeout=30).json()["images"][0]

    first = make()
    assert make() == first  # the same PNG bytes
    assert colour(make(seed=8)) != colour(first)
    assert colour(make(prompt="other")) != colour(first)
    assert colour(make(seed=6, batch_size=2)) != colour(first)  # image 0 of that batch has seed 6
    varied = make(subseed=3, subseed_strength=0.5)
    assert make(subseed=3, subseed_strength=0.5) == varied
    assert colour(make(subseed=4, subseed_strength=0.5)) != colour(varied)
    assert colour(make(subseed=4)) == colour(first)  # a variation seed matters only with a strength


def test_non_latin_prompts_reach_png_info(fast_sim: ServerThread) -> None:
    response = httpx.post(fast_sim.url + "/sdapi/v1/txt2img", json={"prompt": "café ☕ 猫", "steps": 2}, timeout=30)
    assert png(response.json()["images"][0]).info["parameters"] == info_of(response)["infotexts"][0]


def test_catalogue_and_validation_are_the_real_workers(fast_sim: ServerThread) -> None:
    with httpx.Client(base_url=fast_sim.url, timeout=10) as client:
        models = client.get("/sdapi/v1/sd-models").json()
        assert [m["model_name"] for m in models] == ["sim-sdxl-base"]
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == models[0]["title"]
        samplers = client.get("/sdapi/v1/samplers").json()
        assert [s["name"] for s in samplers] == [s.name for s in SAMPLERS]
        by_name = {s["name"]: s["options"]["schedulers"] for s in samplers}
        assert by_name["Euler a"] == ["automatic", "uniform", "sgm_uniform", "normal"]
        assert by_name["DPM++ 2M"] == [s.name for s in SCHEDULES]
        assert [s["name"] for s in client.get("/sdapi/v1/schedulers").json()] == [s.name for s in SCHEDULES]
        assert client.get("/healthz").json() == {"status": "ok"}

        def post(**body) -> httpx.Response:
            return client.post("/sdapi/v1/txt2img", json={"steps": 2, **body})

        assert post(sampler_name="DPM++ SDE", scheduler="Karras").status_code == 200
        for body, status, detail in [
            ({"steps": 0}, 422, "steps: "),
            ({"width": 99999}, 422, "width: "),
            ({"batch_size": 9}, 422, "batch_size: "),
            ({"sampler_name": "Nope"}, 404, "Sampler not found"),
            ({"sampler_name": "Euler a", "scheduler": "Karras"}, 422, "scheduler: "),
            ({"refiner_checkpoint": "sd_xl_refiner_1.0"}, 404, "refiner_checkpoint: "),
        ]:
            answer = post(**body)
            assert answer.status_code == status, (body, answer.text)
            assert detail in answer.json()["detail"], answer.json()
        assert client.post("/sdapi/v1/txt2img", content=b"{not json").status_code == 422


def _shapes(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    return {f.name: (f.type, frozenset(k for s in f.samples for k in s.labels))
            for f in text_string_to_metric_families(text)}


def test_metrics_before_during_and_after_jobs_and_the_queue_bound() -> None:
    from sdxlpool.worker.jobs import JobQueue
    from sdxlpool.worker.metrics import WorkerMetrics

    real = WorkerMetrics(JobQueue(max_queued=1), ready=lambda: True,
                         info={"gpu_model": "a100", "provider": "p", "location": "l", "model": "m"})
    job = {"prompt": "slow", "sampler_name": "Euler", "steps": 20, "seed": 1}  # 20 x 0.04 s
    with running_sim(step_seconds=0.04, max_queue=1) as sim:
        url = sim.url
        text = httpx.get(url + "/metrics").text
        assert _shapes(text) == _shapes(generate_latest(real.registry).decode())  # names, types, labels
        before = metrics(url)
        assert before[mn.WORKER_READY] == 1
        assert before[mn.WORKER_BATCH_MAX] == 1  # no --batch-max
        assert before[mn.WORKER_QUEUE_DEPTH] == before[mn.WORKER_INFLIGHT] == 0
        assert before[mn.WORKER_PENDING_STEPS] == 0
        assert 0.04 * 0.7 <= before[mn.WORKER_STEP_SECONDS] <= 0.04 * 1.3  # measured by the warm-up
        assert f'{mn.WORKER_INFO}{{gpu_model=a100,location=Lab, 127.0.0.1,model=sim-sdxl-base [' in ",".join(before)

        first = Background(url, job)
        during = wait_for(lambda: (m := metrics(url))[mn.WORKER_INFLIGHT] == 1 and m)
        assert during[mn.WORKER_QUEUE_DEPTH] == 0
        assert 0 < during[mn.WORKER_PENDING_STEPS] <= 20
        later = wait_for(lambda: (m := metrics(url))[mn.WORKER_PENDING_STEPS]
                         < during[mn.WORKER_PENDING_STEPS] - 2 and m)  # falls step by step
        assert later[mn.WORKER_INFLIGHT] == 1

        second = Background(url, {**job, "steps": 5, "seed": 2})
        queued = wait_for(lambda: (m := metrics(url))[mn.WORKER_QUEUE_DEPTH] == 1 and m)
        assert 5 <= queued[mn.WORKER_PENDING_STEPS] <= 25
        rejected = httpx.post(url + "/sdapi/v1/txt2img", json=job, timeout=10)  # max_queue=1: one waits already
        assert rejected.status_code == 503
        assert rejected.json()["error"] == "queue_full" and int(rejected.headers["Retry-After"]) >= 1

        assert first.result().status_code == 200 and second.result().status_code == 200
        after = metrics(url)
        assert after[mn.WORKER_QUEUE_DEPTH] == after[mn.WORKER_INFLIGHT] == 0
        assert after[mn.WORKER_PENDING_STEPS] == 0
        outcome = f"{mn.WORKER_REQUESTS}_total{{outcome=%s}}"
        assert after[outcome % "success"] - before[outcome % "success"] == 2
        assert after[outcome % "rejected"] - before[outcome % "rejected"] == 1
        assert after[f"{mn.WORKER_INFERENCE_SECONDS}_count"] - before[f"{mn.WORKER_INFERENCE_SECONDS}_count"] == 2


def test_progress_and_interrupt() -> None:
    with running_sim(step_seconds=0.05) as sim, httpx.Client(base_url=sim.url, timeout=10) as client:
        assert client.post("/sdapi/v1/interrupt").json() == {"interrupted": False}  # nothing running
        idle = client.get("/sdapi/v1/progress").json()
        assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
        job = Background(sim.url, {"sampler_name": "Euler", "steps": 40, "seed": 3})  # 2 s
        seen = wait_for(lambda: (p := client.get("/sdapi/v1/progress").json())["state"]["sampling_step"] >= 2 and p)
        assert 0 < seen["progress"] < 1 and seen["eta_relative"] > 0
        assert seen["state"]["sampling_steps"] == 40 and seen["state"]["job_count"] == 1
        assert seen["current_image"] is None  # the simulator has no latents to preview
        assert client.post("/sdapi/v1/interrupt").json() == {"interrupted": True}
        response = job.result()
        assert job.seconds < 1.5
        assert response.status_code == 200
        info = info_of(response)
        assert info["interrupted"] is True and 2 <= info["sdxlpool"]["steps_done"] < 40
        assert png(response.json()["images"][0]).size == (1024, 1024)
        after = metrics(sim.url)
        assert after[f"{mn.WORKER_REQUESTS}_total{{outcome=interrupted}}"] == 1
        assert after[mn.WORKER_PENDING_STEPS] == 0
        assert client.get("/sdapi/v1/progress").json()["progress"] == 0


def test_skip_ends_the_batch_and_the_job_goes_on_with_the_next() -> None:
    """A1111's Skip: the running batch stops at its next step (its image still comes back) and the
    next `n_iter` batch runs in full."""
    with running_sim(step_seconds=0.05) as sim, httpx.Client(base_url=sim.url, timeout=10) as client:
        assert client.post("/sdapi/v1/skip").json() == {"skipped": False}  # nothing running
        job = Background(sim.url, {"sampler_name": "Euler", "steps": 40, "n_iter": 2, "seed": 3,
                                   "force_task_id": "mine"})  # 2 s a batch
        wait_for(lambda: (p := client.get("/sdapi/v1/progress").json()["state"])["job_no"] == 0
                 and p["sampling_step"] >= 2)
        # Named: only the job of that name is skipped.
        assert client.post("/sdapi/v1/skip", params={"id_task": "someone-else"}).json() == {"skipped": False}
        assert client.post("/sdapi/v1/skip", params={"id_task": "mine"}).json() == {"skipped": True}
        wait_for(lambda: client.get("/sdapi/v1/progress").json()["state"]["job_no"] == 1)
        response = job.result()
        assert response.status_code == 200
        info = info_of(response)
        assert len(response.json()["images"]) == 2  # the skipped batch's image, and the next one's
        assert 40 + 2 <= info["sdxlpool"]["steps_done"] < 80  # the second batch ran all its 40 steps
        assert info["interrupted"] is False


def test_a_named_interrupt_stops_only_that_job() -> None:
    with running_sim(step_seconds=0.05) as sim, httpx.Client(base_url=sim.url, timeout=10) as client:
        job = Background(sim.url, {"sampler_name": "Euler", "steps": 20, "seed": 3, "force_task_id": "mine"})
        wait_for(lambda: client.get("/sdapi/v1/progress").json()["state"]["sampling_step"] >= 1)
        assert client.post("/sdapi/v1/interrupt", params={"id_task": "theirs"}).json() == {"interrupted": False}
        response = job.result()
        assert info_of(response)["interrupted"] is False and info_of(response)["sdxlpool"]["steps_done"] == 20


def test_image_bytes_pads_pngs_that_still_decode(fast_sim: ServerThread) -> None:
    body = {"prompt": "big", "seed": 5, "steps": 2, "width": 1024, "height": 768}
    small = httpx.post(fast_sim.url + "/sdapi/v1/txt2img", json=body, timeout=30).json()["images"][0]
    assert len(base64.b64decode(small)) < 2000
    with running_sim(image_bytes=1_500_000, default_width=256, default_height=256) as sim:
        response = httpx.post(sim.url + "/sdapi/v1/txt2img", json=body, timeout=30)
    image_b64 = response.json()["images"][0]
    assert len(base64.b64decode(image_b64)) >= 1_500_000
    image = png(image_b64)
    assert image.size == (1024, 768) and image.info["parameters"].startswith("big\n")
    assert colour(image_b64) == colour(small)  # the same image, only padded
