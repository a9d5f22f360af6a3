"""The exact fast path (sdxlpool/worker/fastpath.py, issue 16) on the CPU and the tiny model.

The server tests compile with dynamo's `eager` backend (`--compile-backend eager`): dynamo captures
the same graphs, guards and shapes as with inductor, so the dispatch, the warm-up on the job
thread, readiness and the "no compile in a request" rule are all real; generating C++ kernels for
the tiny UNet with inductor costs 70-90 s on a 2-core CI runner, over this suite's compile budget.
Inductor itself runs in the compile-cache test, on a small module: its artifacts are written and a
second start loads them. Image equality under inductor on a GPU is benchmarks/gpu_sdxl.py's gate.
"""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from sdxlpool.worker.fastpath import (
    SDXL_SIZES,
    FastPath,
    Shape,
    cache_key,
    call_key,
    compile_mode,
    fast_path_on,
    whitelist,
)
from sdxlpool.worker.settings import WorkerSettings
from tests.conftest import start_worker

REQUEST = {"prompt": "a red fox in snow", "steps": 4, "seed": 7, "sampler_name": "Euler"}
# fp32 throughout; fused QKV and channels_last reorder float sums: pixel values may move by one level.
MAX_PIXEL_DIFFERENCE = 1


# -- decisions -------------------------------------------------------------------------------------------
def test_on_by_default_with_cuda_off_on_the_cpu_and_the_flag_wins() -> None:
    assert fast_path_on(None, "cuda") and fast_path_on(None, "cuda:1") and not fast_path_on(None, "cpu")
    assert not fast_path_on(False, "cuda") and fast_path_on(True, "cpu")
    assert compile_mode("auto", "cuda") == "max-autotune" and compile_mode("auto", "cpu") == "default"
    assert compile_mode("reduce-overhead", "cuda") == "reduce-overhead"


def test_the_whitelist_starts_with_the_default_size_and_adds_sdxl_sizes_on_cuda() -> None:
    cuda = whitelist("auto", "1", device="cuda", default_size=(1024, 1024))
    assert [(s.width, s.height) for s in cuda] == list(SDXL_SIZES) and {s.batch for s in cuda} == {1}
    assert whitelist("auto", "1", device="cuda", default_size=(896, 896))[0] == Shape(896, 896, 1)
    assert whitelist("auto", "1", device="cpu", default_size=(64, 64)) == (Shape(64, 64, 1),)
    assert whitelist("64x64, 128x64", "1,2", device="cpu", default_size=(8, 8)) == (
        Shape(64, 64, 1), Shape(128, 64, 1), Shape(64, 64, 2), Shape(128, 64, 2))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("compile_shapes", "1024", "WIDTHxHEIGHT"),
    ("compile_shapes", "1020x1024", "multiples of 8"),
    ("compile_batch_sizes", "0", "1 or more"),
    ("compile_batch_sizes", "one", "integers"),
])
def test_bad_compile_shapes_are_refused_naming_the_rule(field: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorkerSettings(models=[Path("m")], **{field: value})


def test_the_cache_key_names_the_gpu_and_torch_and_changes_with_the_shapes() -> None:
    shapes = (Shape(1024, 1024),)
    key = cache_key("NVIDIA H100 80GB HBM3", "2.13.0+cu128", shapes, {"mode": "max-autotune"})
    assert key.startswith("nvidia-h100-80gb-hbm3-torch2.13.0-cu128-")
    assert key != cache_key("NVIDIA H100 80GB HBM3", "2.13.0+cu128", (*shapes, Shape(832, 1216)),
                            {"mode": "max-autotune"})
    assert key != cache_key("cpu", "2.13.0+cu128", shapes, {"mode": "max-autotune"})
    assert key != cache_key("NVIDIA H100 80GB HBM3", "2.14.0", shapes, {"mode": "max-autotune"})


def test_a_call_is_keyed_by_its_tensor_shapes_not_their_values() -> None:
    a = call_key((torch.zeros(2, 4, 8, 8),), {"return_dict": False, "extra": {"t": torch.ones(2, 6)}})
    b = call_key((torch.ones(2, 4, 8, 8),), {"return_dict": False, "extra": {"t": torch.zeros(2, 6)}})
    assert a == b
    assert a != call_key((torch.zeros(2, 4, 8, 16),), {"return_dict": False, "extra": {"t": torch.ones(2, 6)}})
    assert a != call_key((torch.zeros(2, 4, 8, 8),), {"return_dict": True, "extra": {"t": torch.ones(2, 6)}})


def test_the_worker_command_names_a_bad_compile_flag(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("sdxlpool")
    result = subprocess.run([str(script), "worker", "--model", str(tmp_path), "--compile-shapes", "1024"],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "--compile-shapes" in result.stderr and "WIDTHxHEIGHT" in result.stderr, \
        result.stderr


# -- the worker with the fast path on --------------------------------------------------------------------
@pytest.fixture(scope="module")
def fast_worker(tiny_model, tmp_path_factory):
    """A worker with the fast path on at 64x64 and 72x64 (batch 1): what its /readyz said when it
    first turned ready (the first shape warm before ready) and when every shape was warm (the second
    warms after ready). Without a refiner: its UNet is compiled the same way as the base's, and
    tracing it too would cost another ~15 s."""
    server = start_worker(tiny_model, models=[tiny_model.base], refiner=None, compile=True, compile_backend="eager",
                          compile_shapes="64x64,72x64", compile_cache_dir=tmp_path_factory.mktemp("compile"),
                          warmup=False)
    with server:
        first_ready = _first_ready(server.url)
        all_warm = _ready_when(server.url, lambda body: not body["compiled"]["pending"])
        yield SimpleNamespace(url=server.url, first_ready=first_ready, all_warm=all_warm,
                              fast=server.server.config.app.state.worker.service.engine.fast)


def _first_ready(url: str) -> dict:
    return _ready_when(url, lambda body: True)


def _ready_when(url: str, condition, timeout: float = 300.0) -> dict:
    """/readyz's body once it is 200 and `condition(body)` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url + "/readyz", timeout=5)
            if answer.status_code == 200 and condition(answer.json()):
                return answer.json()
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def _txt2img(url: str, **fields: object) -> tuple[np.ndarray, dict]:
    answer = httpx.post(url + "/sdapi/v1/txt2img", json={**REQUEST, **fields}, timeout=300)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
    return np.asarray(image.convert("RGB"), dtype=np.int16), json.loads(body["info"])


def _compiles() -> int:
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def test_the_first_compiled_shape_is_warm_before_ready_and_the_rest_warm_after(fast_worker) -> None:
    assert fast_worker.first_ready["compiled"]["warm"] == ["64x64x1"]
    assert fast_worker.first_ready["compiled"]["pending"] in (["72x64x1"], [])  # may be done by the first poll
    assert fast_worker.all_warm["compiled"] == {"warm": ["64x64x1", "72x64x1"], "pending": [], "mode": "default",
                                                "cache_loaded": False}


def test_every_shape_is_compiled_on_the_job_thread(fast_worker) -> None:
    warmed_on = fast_worker.fast.warmed_on
    assert set(warmed_on) == {"64x64x1", "72x64x1"}
    assert all(thread.startswith("sdxl-gpu") for thread in warmed_on.values())  # the queue's one job thread
    _txt2img(fast_worker.url, width=80, height=64)
    assert set(warmed_on.values()) == {fast_worker.fast.job_thread}  # where requests run


def test_compiled_and_eager_make_the_same_image(fast_worker, client: httpx.Client) -> None:
    fast, info = _txt2img(fast_worker.url, width=64, height=64)
    plain, plain_info = _txt2img(str(client.base_url), width=64, height=64)
    assert info["sdxlpool"]["path"] == "compiled" and "path" not in plain_info["sdxlpool"]
    assert np.abs(fast - plain).max() <= MAX_PIXEL_DIFFERENCE


def test_a_whitelisted_shape_runs_compiled_and_compiles_nothing_more(fast_worker) -> None:
    before = _compiles()
    _image, info = _txt2img(fast_worker.url, width=64, height=64, sampler_name="DPM++ 2M", scheduler="Karras")
    assert info["sdxlpool"]["path"] == "compiled"  # another sampler: the same shapes (float32 timesteps)
    assert _compiles() == before


def test_another_shape_runs_eager_and_never_compiles_in_the_request(fast_worker) -> None:
    before = _compiles()
    _image, info = _txt2img(fast_worker.url, width=80, height=64)
    assert info["sdxlpool"]["path"] == "eager"
    assert _compiles() == before


def test_the_vae_is_fp32_by_default_and_bf16_on_request(tiny_model) -> None:
    from sdxlpool.worker.engine import DiffusersEngine
    from sdxlpool.worker.generate.pipelines import _decode

    assert WorkerSettings(models=[Path("m")]).vae_dtype == "fp32"
    engine = DiffusersEngine(WorkerSettings(models=[tiny_model.base], device="cpu", vae_dtype="bf16"))
    pipeline = engine.load().current.pipeline
    assert pipeline.vae.dtype == torch.bfloat16 and pipeline.unet.dtype == torch.float32
    assert engine.fast is None  # the CPU's default: no fast path
    with torch.inference_mode():
        images = _decode(pipeline, torch.randn(1, 4, 8, 8))
    assert images[0].size == (64, 64)


# -- the compile cache (inductor) -----------------------------------------------------------------------
class _Decoder(torch.nn.Module):
    """A small VAE-shaped module: what FastPath compiles of a pipeline's VAE is its `decode`."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 3, 3, padding=1)

    def decode(self, latents: torch.Tensor, return_dict: bool = False) -> tuple[torch.Tensor]:
        return (torch.tanh(self.conv(latents)),)

    def fuse_qkv_projections(self) -> None:
        """No attention to fuse."""


def _start(cache: Path) -> tuple[FastPath, torch.Tensor, torch.Tensor]:
    """One worker start as far as the cache goes: install, then compile one shape on warm-up."""
    fast = FastPath(device="cpu", shapes=(Shape(64, 64),), mode="default", backend="inductor", fuse_qkv=True,
                    cache_dir=cache, gpu="cpu")
    torch.manual_seed(0)
    module = _Decoder()
    latents = torch.randn(1, 4, 8, 8)
    with torch.inference_mode():
        eager = module.decode(latents)[0]
        fast.install([SimpleNamespace(unet=None, vae=module)])
        with fast.warming(Shape(64, 64)):
            out = module.decode(latents)[0]
    return fast, eager, out


def test_the_compile_cache_is_written_and_a_second_start_loads_it(tmp_path: Path, monkeypatch) -> None:
    # Each start gets an empty inductor cache, as a new pod does: only the loaded artifacts can hit.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-1"))
    torch._dynamo.reset()
    first, eager, out = _start(tmp_path / "cache")
    assert not first.cache_loaded and torch.allclose(out, eager, atol=1e-5)
    files = list((tmp_path / "cache").glob("cpu-torch*/artifacts.bin"))
    assert len(files) == 1 and files[0].stat().st_size > 0 and files[0].parent == first.cache_dir

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-2"))
    torch._dynamo.reset()  # what compiled is forgotten, as in a new process
    hits = torch._dynamo.utils.counters["inductor"]["fxgraph_cache_hit"]
    second, _eager, again = _start(tmp_path / "cache")
    assert second.cache_loaded and second.cache_dir == first.cache_dir
    assert torch._dynamo.utils.counters["inductor"]["fxgraph_cache_hit"] > hits  # compiled from the cache
    assert torch.equal(out, again)
