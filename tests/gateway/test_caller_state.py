"""A1111's per-client state routes at the gateway, per caller: progress, /internal/progress,
interrupt, skip and options, through a real gateway and real sim-workers over HTTP.

Callers are told apart by API key (two keys here: on loopback every client has one address), and
by address when the gateway has no keys.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sdxlpool.gateway.api_keys import hash_key
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.polling import wait_for
from tests.reliability.conftest import backend, gateway, sim_worker
from tests.worker.imaging import decode

KEY_A, KEY_B = "sdxl-key-of-caller-a", "sdxl-key-of-caller-b"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"X-API-Key": KEY_B}
STEP = 0.05  # seconds per 1024x1024 step on the sim-workers: a 40-step job takes 2 s
JOB = {"prompt": "x", "sampler_name": "Euler", "width": 1024, "height": 1024, "steps": 40, "seed": 1}


class Request:
    """A txt2img through the gateway, running in a thread while the test looks at the pool."""

    def __init__(self, url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

        def run() -> None:
            try:
                self.response = httpx.post(url + "/sdapi/v1/txt2img", json=body, headers=headers, timeout=60)
            except Exception as exc:  # noqa: BLE001 - inspected by the test
                self.error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> httpx.Response:
        self.thread.join(60)
        assert self.response is not None, self.error
        assert self.response.status_code == 200, self.response.text
        return self.response

    def info(self) -> dict[str, Any]:
        return json.loads(self.result().json()["info"])


@pytest.fixture(scope="module")
def workers() -> Iterator[list[ServerThread]]:
    with sim_worker(step_seconds=STEP, worker_name="sim-1") as one, \
            sim_worker(step_seconds=STEP, worker_name="sim-2") as two:
        one.wait_ready()
        two.wait_ready()
        yield [one, two]


@pytest.fixture(scope="module")
def keyed(workers: list[ServerThread], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A gateway with two API keys in front of both workers."""
    folder = tmp_path_factory.mktemp("keyed")
    keys = folder / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "a", "sha256": hash_key(KEY_A)},
                                             {"name": "b", "sha256": hash_key(KEY_B)}]}))
    backends = [backend(workers[0], "sim-1"), backend(workers[1], "sim-2")]
    with gateway(backends, folder, api_keys_file=keys) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def open_pool(workers: list[ServerThread], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A gateway without keys, in front of the first worker only: callers are addresses."""
    with gateway([backend(workers[0], "sim-1")], tmp_path_factory.mktemp("open")) as server:
        server.wait_ready()
        yield server


def progress(url: str, headers: dict[str, str] | None = None, **params: str) -> dict[str, Any]:
    response = httpx.get(url + "/sdapi/v1/progress", headers=headers, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def running(url: str, headers: dict[str, str] | None, job: str) -> dict[str, Any]:
    """Wait until the caller's /progress shows its job `job` a step or more in."""
    return wait_for(lambda: (p := progress(url, headers))["state"]["job"] == job
                    and p["state"]["sampling_step"] >= 1 and p, timeout=15)


def internal(url: str, headers: dict[str, str] | None, **body: Any) -> dict[str, Any]:
    response = httpx.post(url + "/internal/progress", json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_caller_sees_and_interrupts_only_its_own_job(keyed: ServerThread) -> None:
    url = keyed.url
    idle = progress(url, A)
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0 and idle["state"]["job"] == ""
    mine = Request(url, {**JOB, "force_task_id": "a-job"}, A)
    theirs = Request(url, {**JOB, "steps": 60, "force_task_id": "b-job"}, B)
    seen_a = running(url, A, "a-job")
    seen_b = running(url, B, "b-job")
    assert 0 < seen_a["progress"] < 1 and seen_a["state"]["sampling_steps"] == 40
    assert seen_b["state"]["sampling_steps"] == 60
    # webuiapi's get_progress sends skip_current_image=true; the answer is the same job, no picture.
    webuiapi = progress(url, A, skip_current_image="true")
    assert webuiapi["state"]["job"] == "a-job" and webuiapi["current_image"] is None
    assert httpx.get(url + "/sdapi/v1/progress", timeout=10).status_code == 401  # keys configured: none sent

    assert httpx.post(url + "/sdapi/v1/interrupt", headers=A, timeout=10).json() == {"interrupted": True}
    stopped, going_on = mine.info(), theirs.info()
    assert stopped["interrupted"] is True and stopped["sdxlpool"]["steps_done"] < 40
    assert going_on["interrupted"] is False and going_on["sdxlpool"]["steps_done"] == 60
    assert progress(url, A)["state"]["job_count"] == 0
    # Nothing of A's runs now: interrupting stops nothing.
    assert httpx.post(url + "/sdapi/v1/interrupt", headers=A, timeout=10).json() == {"interrupted": False}


def test_interrupt_by_a_caller_with_nothing_running_leaves_the_others(keyed: ServerThread) -> None:
    theirs = Request(keyed.url, {**JOB, "force_task_id": "b-only"}, B)
    running(keyed.url, B, "b-only")
    assert httpx.post(keyed.url + "/sdapi/v1/interrupt", headers=A, timeout=10).json() == {"interrupted": False}
    assert httpx.post(keyed.url + "/sdapi/v1/skip", headers=A, timeout=10).json() == {"skipped": False}
    info = theirs.info()
    assert info["interrupted"] is False and info["sdxlpool"]["steps_done"] == 40


def test_internal_progress_follows_the_clients_own_task_id(keyed: ServerThread) -> None:
    url = keyed.url
    job = Request(url, {**JOB, "force_task_id": "my-task"}, A)
    active = wait_for(lambda: (p := internal(url, A, id_task="my-task"))["active"] and p["progress"] > 0 and p)
    assert active["queued"] is False and active["completed"] is False and active["eta"] > 0
    assert active["id_live_preview"] == -1 and active["live_preview"] is None  # the sim makes no previews
    # The same id asked by another caller is not theirs.
    other = internal(url, B, id_task="my-task")
    assert other["active"] is False and other["queued"] is False and other["completed"] is False
    assert progress(url, A)["state"]["job"] == "my-task"
    job.result()
    done = internal(url, A, id_task="my-task")
    assert done["completed"] is True and done["active"] is False and done["progress"] is None
    assert internal(url, A, id_task="never-sent")["completed"] is False


def test_skip_ends_the_callers_current_batch_and_the_job_goes_on(keyed: ServerThread) -> None:
    job = Request(keyed.url, {**JOB, "n_iter": 2, "force_task_id": "two-batches"}, A)
    wait_for(lambda: (p := progress(keyed.url, A))["state"]["job"] == "two-batches"
             and p["state"]["job_no"] == 0 and p["state"]["sampling_step"] >= 1)
    assert httpx.post(keyed.url + "/sdapi/v1/skip", headers=A, timeout=10).json() == {"skipped": True}
    response = job.result()
    info = json.loads(response.json()["info"])
    assert len(response.json()["images"]) == 2
    assert 41 <= info["sdxlpool"]["steps_done"] < 80 and info["interrupted"] is False


def test_options_are_the_callers_own(keyed: ServerThread, workers: list[ServerThread]) -> None:
    url = keyed.url
    model = httpx.get(url + "/sdapi/v1/sd-models", headers=A, timeout=10).json()[0]
    answer = httpx.post(url + "/sdapi/v1/options", headers=A, timeout=10,
                        json={"sd_model_checkpoint": model["model_name"], "CLIP_stop_at_last_layers": 2,
                              "samples_format": "jpg"})  # a key workers do not apply: accepted, no effect
    assert answer.status_code == 200, answer.text
    view_a = httpx.get(url + "/sdapi/v1/options", headers=A, timeout=10).json()
    view_b = httpx.get(url + "/sdapi/v1/options", headers=B, timeout=10).json()
    assert view_a["CLIP_stop_at_last_layers"] == 2 and view_a["sd_model_checkpoint"] == model["title"]
    assert view_a["sd_checkpoint_hash"] == model["sha256"]
    assert view_b["CLIP_stop_at_last_layers"] == 1
    # A's next image uses them, B's does not; the request's own override_settings win.
    small = {"prompt": "x", "steps": 2, "seed": 4}
    a_info = Request(url, small, A).result()
    assert json.loads(a_info.json()["info"])["clip_skip"] == 2
    assert a_info.json()["parameters"]["override_settings"] == {"sd_model_checkpoint": model["title"],
                                                                "CLIP_stop_at_last_layers": 2}
    b_info = Request(url, small, B).result()
    assert json.loads(b_info.json()["info"])["clip_skip"] == 1 and b_info.json()["parameters"]["override_settings"] is None
    own = Request(url, {**small, "override_settings": {"CLIP_stop_at_last_layers": 3}}, A).info()
    assert own["clip_skip"] == 3
    # The native API too.
    native = httpx.post(url + "/v1/generate", json=small, headers=A, timeout=30).json()
    assert native["info"]["clip_skip"] == 2
    # Not a worker's option: every worker still has its own default.
    for worker in workers:
        assert httpx.get(worker.url + "/sdapi/v1/options", timeout=10).json()["CLIP_stop_at_last_layers"] == 1
    # null forgets A's own value.
    httpx.post(url + "/sdapi/v1/options", headers=A, json={"CLIP_stop_at_last_layers": None}, timeout=10)
    assert httpx.get(url + "/sdapi/v1/options", headers=A, timeout=10).json()["CLIP_stop_at_last_layers"] == 1


@pytest.mark.parametrize(("values", "field"), [
    ({"sd_model_checkpoint": "no-such-model"}, "sd_model_checkpoint"),
    ({"sd_model_checkpoint": 3}, "sd_model_checkpoint"),
    ({"sd_vae": "no-such.vae.safetensors"}, "sd_vae"),
    ({"CLIP_stop_at_last_layers": 13}, "CLIP_stop_at_last_layers"),
    ({"CLIP_stop_at_last_layers": "2"}, "CLIP_stop_at_last_layers"),
    ({"eta_noise_seed_delta": 1.5}, "eta_noise_seed_delta"),
])
def test_bad_options_are_refused_naming_the_key_and_nothing_is_stored(keyed: ServerThread, values: dict,
                                                                      field: str) -> None:
    answer = httpx.post(keyed.url + "/sdapi/v1/options", headers=B, timeout=10,
                        json={"CLIP_stop_at_last_layers": 4, **values})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"] == "invalid_request" and field in answer.json()["detail"]
    assert httpx.get(keyed.url + "/sdapi/v1/options", headers=B, timeout=10).json()["CLIP_stop_at_last_layers"] == 1


def test_without_keys_the_caller_is_its_address(open_pool: ServerThread) -> None:
    url = open_pool.url
    first = Request(url, {**JOB, "force_task_id": "first"})
    running(url, None, "first")
    second = Request(url, {**JOB, "steps": 4, "force_task_id": "second"})  # waits behind it on the one worker
    queued = wait_for(lambda: (p := internal(url, None, id_task="second"))["queued"] and p)
    assert queued["active"] is False and queued["textinfo"] == "In queue: 2/2"
    assert progress(url)["state"]["job"] == "first"
    assert httpx.post(url + "/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 3}, timeout=10).status_code == 200
    assert httpx.post(url + "/sdapi/v1/interrupt", timeout=10).json() == {"interrupted": True}
    assert first.info()["interrupted"] is True
    assert second.info()["interrupted"] is False
    assert Request(url, {"prompt": "x", "steps": 2}).info()["clip_skip"] == 3


def test_a_caller_that_asks_for_a_global_override_changes_no_worker(keyed: ServerThread,
                                                                    workers: list[ServerThread]) -> None:
    """A1111's override_settings_restore_afterwards: false makes the override global; through the
    gateway it applies to the request alone."""
    body = {"prompt": "x", "steps": 2, "override_settings": {"CLIP_stop_at_last_layers": 5},
            "override_settings_restore_afterwards": False}
    assert Request(keyed.url, body, B).info()["clip_skip"] == 5
    for worker in workers:
        assert httpx.get(worker.url + "/sdapi/v1/options", timeout=10).json()["CLIP_stop_at_last_layers"] == 1


def test_the_webuiapi_client_waits_sets_its_model_and_interrupts(keyed: ServerThread) -> None:
    """PyPI `webuiapi` against the gateway, as caller B (its session carries the key)."""
    import webuiapi

    host, port = keyed.url.removeprefix("http://").split(":")
    api = webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler", steps=2)
    api.session.headers.update(B)
    api.util_wait_for_ready(check_interval=0.05)
    title = api.util_get_model_names()[0]
    api.util_set_model(title)
    assert api.util_get_current_model() == title
    job = Request(keyed.url, {**JOB, "force_task_id": "webuiapi"}, B)
    wait_for(lambda: api.get_progress()["state"]["job"] == "webuiapi")
    assert api.interrupt() == {"interrupted": True}
    assert job.info()["interrupted"] is True
    api.util_wait_for_ready(check_interval=0.05)
    assert api.txt2img(prompt="x", seed=2).info["sd_model_name"] == title.split(" [")[0]


def test_live_preview_comes_through_when_asked(tiny_model: TinyModel, tmp_path: Path) -> None:
    """The tiny-model worker makes real previews: /progress passes `current_image` on unless
    skip_current_image=true, /internal/progress sends it as a data URL once per new step."""
    with start_worker(tiny_model, models=[tiny_model.base]) as worker:
        worker.wait_ready()
        with gateway([{"name": "tiny", "url": worker.url, "gpu": "A100", "type": "sdxlpool"}], tmp_path) as pool:
            pool.wait_ready()
            job = Request(pool.url, {"prompt": "slow", "sampler_name": "Euler", "width": 256, "height": 256,
                                     "steps": 30, "seed": 1, "force_task_id": "look"})
            seen = wait_for(lambda: (p := progress(pool.url))["state"]["job"] == "look"
                            and p["state"]["sampling_step"] >= 1 and p["current_image"] and p, timeout=60)
            assert decode(seen["current_image"]).size == (256 // 8, 256 // 8)
            assert progress(pool.url, skip_current_image="true")["current_image"] is None
            first = internal(pool.url, None, id_task="look", id_live_preview=-1)
            assert first["active"] is True and first["live_preview"].startswith("data:image/png;base64,")
            again = internal(pool.url, None, id_task="look", id_live_preview=first["id_live_preview"])
            assert again["id_live_preview"] >= first["id_live_preview"]
            if again["id_live_preview"] == first["id_live_preview"]:  # no new step since: no picture again
                assert again["live_preview"] is None
            unasked = internal(pool.url, None, id_task="look", live_preview=False)
            assert unasked["active"] is True and unasked["live_preview"] is None
            job.result()
