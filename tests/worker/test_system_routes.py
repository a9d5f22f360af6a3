"""A1111's other list and status routes on the worker (sdxlpool/worker/routes/system.py), in A1111's
shapes: what the worker has none of is an empty list, /memory reads this process and the device,
/cmd-flags the worker's settings, /refresh-checkpoints re-lists nothing, and the server kill and
restart routes stay absent."""

from __future__ import annotations

import sys

import httpx
import pytest
import torch

from sdxlpool.worker.memory import a1111_cuda, cuda_memory


@pytest.mark.parametrize(("path", "expected"), [
    ("/sdapi/v1/face-restorers", []),
    ("/sdapi/v1/realesrgan-models", []),  # the shared worker has no model upscalers
    ("/sdapi/v1/hypernetworks", []),
    ("/sdapi/v1/scripts", {"txt2img": [], "img2img": []}),
    ("/sdapi/v1/script-info", []),
    ("/sdapi/v1/extensions", []),
])
def test_lists_of_what_the_worker_does_not_have_are_empty_in_a1111_shape(client: httpx.Client, path: str,
                                                                          expected: object) -> None:
    answer = client.get(path)
    assert answer.status_code == 200 and answer.json() == expected, answer.text


@pytest.mark.parametrize("path", ["/sdapi/v1/server-kill", "/sdapi/v1/server-restart", "/sdapi/v1/server-stop"])
def test_server_kill_and_restart_routes_are_absent(client: httpx.Client, path: str) -> None:
    assert client.post(path).status_code == 404
    assert client.get("/readyz").status_code == 200


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RAM is read from /proc")
def test_memory_reports_this_process_ram_and_no_cuda_on_the_cpu(client: httpx.Client) -> None:
    psutil = pytest.importorskip("psutil")
    memory = client.get("/sdapi/v1/memory").json()
    # The worker runs in this test process (a uvicorn thread): its RAM is this process's.
    assert set(memory) == {"ram", "cuda"}
    assert memory["ram"]["total"] == psutil.virtual_memory().total
    assert abs(memory["ram"]["used"] - psutil.Process().memory_info().rss) < 256 * 2**20
    assert memory["ram"]["free"] == memory["ram"]["total"] - memory["ram"]["used"]
    assert memory["cuda"] == {"error": "unavailable"}  # A1111's answer without CUDA


def test_cmd_flags_are_the_workers_settings_by_flag_name(client: httpx.Client, worker) -> None:
    flags = client.get("/sdapi/v1/cmd-flags").json()
    assert flags["gpu_model"] == "RTX 3090" and flags["port"] == int(worker.url.rsplit(":", 1)[1])
    assert flags["default_width"] == 128 and flags["strict"] is False and flags["lora_dir"] is None
    assert all(isinstance(path, str) for path in flags["models"]) and len(flags["models"]) == 2


def test_refresh_checkpoints_answers_null_and_the_list_stays(client: httpx.Client) -> None:
    before = client.get("/sdapi/v1/sd-models").json()
    answer = client.post("/sdapi/v1/refresh-checkpoints")
    assert answer.status_code == 200 and answer.json() is None
    assert client.get("/sdapi/v1/sd-models").json() == before
    vae = client.post("/sdapi/v1/refresh-vae")
    assert vae.status_code == 200 and vae.json() is None


# --- the cuda part, from torch's allocator statistics --------------------------------------------


def test_a1111_cuda_shape_from_torchs_statistics() -> None:
    stats = {"allocated_bytes.all.current": 10, "allocated_bytes.all.peak": 20,
             "reserved_bytes.all.current": 30, "reserved_bytes.all.peak": 40,
             "active_bytes.all.current": 5, "active_bytes.all.peak": 6,
             "inactive_split_bytes.all.current": 1, "inactive_split_bytes.all.peak": 2,
             "num_alloc_retries": 3, "num_ooms": 4, "allocation.all.current": 99}
    assert a1111_cuda(free=700, total=1000, stats=stats) == {
        "system": {"free": 700, "used": 300, "total": 1000},
        "active": {"current": 5, "peak": 6}, "allocated": {"current": 10, "peak": 20},
        "reserved": {"current": 30, "peak": 40}, "inactive": {"current": 1, "peak": 2},
        "events": {"retries": 3, "oom": 4}}
    # A device that never allocated has no statistics yet: zeros, as torch counts them.
    assert a1111_cuda(5, 5, {})["allocated"] == {"current": 0, "peak": 0}


def test_cuda_memory_without_a_cuda_device() -> None:
    assert cuda_memory("cpu") == {"error": "unavailable"}
    assert cuda_memory("sim") == {"error": "unavailable"}
    if not torch.cuda.is_available():
        # A worker told to use CUDA where torch has none reports torch's error, not a 500.
        assert cuda_memory("cuda")["error"].startswith(("AssertionError", "RuntimeError"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_memory_on_a_cuda_device() -> None:
    held = torch.empty(2**20, dtype=torch.uint8, device="cuda")
    memory = cuda_memory("cuda")
    assert set(memory) == {"system", "active", "allocated", "reserved", "inactive", "events"}
    assert memory["allocated"]["current"] >= 2**20 and memory["system"]["total"] > memory["system"]["free"] > 0
    del held
