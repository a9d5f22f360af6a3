"""DeepCache, the opt-in fast mode (`--fast-mode deepcache`), on the real tiny SDXL on the CPU.

What is pinned:
- the split forward *is* diffusers' UNet: with every evaluation full (interval 1) its output equals
  the module's own forward bit for bit, on the base and on the refiner UNet;
- cached evaluations really skip the deep blocks: forward hooks on the loaded UNet's blocks count
  the calls (the shallow pair every evaluation, the mid block and the deeper blocks only at full
  ones);
- the mode's state is per pass: the loaded module is never patched, and an exact job after a
  DeepCache job on the same loaded checkpoints is bit for bit the exact job before it;
- through a real worker: `off` is today's image (equal to the exact worker's), deepcache changes
  the image a little (not identical, PSNR above the bound below): base, base + refiner, hires fix;
  and in a same-shape batch each row equals its solo DeepCache image.

Bound: on the random-weight tiny model at 64x64, 8 Euler steps, interval 3, branch 0, the DeepCache
image measured 45-50 dB PSNR against the exact one (largest difference 4-8 levels; 8 prompt/seed
pairs, base alone and base + refiner alike), while the images of two seeds are 12 dB apart. MIN_PSNR
= 35 dB tells "the same picture, a little off" from another picture with room on both sides. This
is the random-weight model (its VAE flattens latent differences of up to ~0.7 into a few levels):
SDXL's quality cost is not measured here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from sdxlpool.worker.deepcache import (
    DeepCache,
    DeepCacheUNet,
    check_unet,
    for_pass,
    full_evaluation,
    shallow_res_count,
)
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.worker.imaging import pixels
from tests.worker.test_batching import _behind_blocker

MIN_PSNR = 35.0  # dB, DeepCache vs exact on the random-weight tiny model (see the docstring)
SMALL = {"prompt": "a red cube on a table", "sampler_name": "Euler", "width": 64, "height": 64, "steps": 8,
         "cfg_scale": 5, "seed": 7}


# -- pure decisions -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("index", "interval", "full"), [
    (0, 3, True), (1, 3, False), (2, 3, False), (3, 3, True), (7, 3, False), (5, 1, True), (4, 2, True),
])
def test_full_evaluations_follow_the_uniform_schedule(index: int, interval: int, full: bool) -> None:
    assert full_evaluation(index, interval) is full


@pytest.mark.parametrize(("up_resnets", "branch", "count"), [
    ([3, 3, 3], 0, 3),  # SDXL base: up block 2 takes conv_in's and down block 0's two resnets
    ([3, 3, 3], 1, 6),
    ([3, 3, 3], 2, 9),  # the deepest branch: everything but the mid block
    ([3, 3, 3, 3], 0, 3),  # the refiner: 4 blocks a side
])
def test_the_shallow_up_blocks_take_the_first_skips(up_resnets: list[int], branch: int, count: int) -> None:
    assert shallow_res_count(up_resnets, branch) == count


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        DeepCache(interval=0)
    with pytest.raises(ValueError, match="branch"):
        DeepCache(branch=-1)


# -- the split forward against diffusers' own --------------------------------------------------------------
@pytest.fixture(scope="module")
def unets(tiny_model: TinyModel) -> dict[str, Any]:
    from diffusers import UNet2DConditionModel

    return {kind: UNet2DConditionModel.from_pretrained(path / "unet").eval()
            for kind, path in (("base", tiny_model.base), ("refiner", tiny_model.refiner))}


def _inputs(unet: Any, batch: int = 2, side: int = 8) -> dict[str, Any]:
    """Random UNet inputs in the shapes the SDXL pipelines pass (CFG doubles the batch)."""
    g = torch.Generator().manual_seed(0)
    config = unet.config
    time_ids = unet.add_embedding.linear_1.in_features - config.projection_class_embeddings_input_dim
    pooled = config.projection_class_embeddings_input_dim - time_ids
    return {
        "sample": torch.randn(batch, config.in_channels, side, side, generator=g),
        "encoder_hidden_states": torch.randn(batch, 77, config.cross_attention_dim, generator=g),
        "added_cond_kwargs": {"text_embeds": torch.randn(batch, pooled, generator=g),
                              "time_ids": torch.randn(batch, time_ids // config.addition_time_embed_dim,
                                                      generator=g)},
    }


@pytest.mark.parametrize("kind", ["base", "refiner"])
@pytest.mark.parametrize("branch", [0, 1])
def test_with_every_evaluation_full_the_split_forward_is_the_unet(unets: dict[str, Any], kind: str,
                                                                    branch: int) -> None:
    unet = unets[kind]
    args = _inputs(unet)
    wrapper = DeepCacheUNet(unet, DeepCache(interval=1, branch=branch))
    with torch.inference_mode():
        for t in (900.0, 500.0, 20.0):
            exact = unet(timestep=torch.tensor(t), return_dict=False, **args)[0]
            split = wrapper(timestep=torch.tensor(t), return_dict=False, **args)[0]
            assert torch.equal(exact, split), (kind, t)
    assert wrapper.full_evaluations == wrapper.evaluations == 3


def test_a_branch_deeper_than_the_unet_is_refused_at_start_up(unets: dict[str, Any]) -> None:
    check_unet(unets["base"], 2)  # SDXL's base: 3 down blocks
    with pytest.raises(ValueError, match="branch must be below the UNet's 3 down blocks"):
        check_unet(unets["base"], 3)
    check_unet(unets["refiner"], 3)  # the refiner has 4


def _count_calls(unet: Any) -> tuple[dict[str, int], list[Any]]:
    calls: dict[str, int] = {}
    handles = []
    named = {"mid": unet.mid_block, **{f"down{i}": b for i, b in enumerate(unet.down_blocks)},
             **{f"up{i}": b for i, b in enumerate(unet.up_blocks)}}
    for name, block in named.items():
        calls[name] = 0
        handles.append(block.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1)))
    return calls, handles


@pytest.mark.parametrize(("kind", "branch", "deep", "shallow"), [
    ("base", 0, ["down1", "down2", "mid", "up0", "up1"], ["down0", "up2"]),
    ("base", 1, ["down2", "mid", "up0"], ["down0", "down1", "up1", "up2"]),
    ("refiner", 0, ["down1", "down2", "down3", "mid", "up0", "up1", "up2"], ["down0", "up3"]),
])
def test_cached_evaluations_skip_the_deep_blocks(unets: dict[str, Any], kind: str, branch: int, deep: list[str],
                                                 shallow: list[str]) -> None:
    unet = unets[kind]
    args = _inputs(unet)
    wrapper = DeepCacheUNet(unet, DeepCache(interval=3, branch=branch))
    calls, handles = _count_calls(unet)
    try:
        with torch.inference_mode():
            outputs = [wrapper(timestep=torch.tensor(999.0 - 100 * i), return_dict=False, **args)[0]
                       for i in range(8)]
    finally:
        for handle in handles:
            handle.remove()
    assert (wrapper.evaluations, wrapper.full_evaluations) == (8, 3)  # evaluations 0, 3 and 6 are full
    assert {name: calls[name] for name in deep} == dict.fromkeys(deep, 3)
    assert {name: calls[name] for name in shallow} == dict.fromkeys(shallow, 8)
    # A cached evaluation is not the exact one (else nothing was reused) ...
    with torch.inference_mode():
        exact = unet(timestep=torch.tensor(899.0), return_dict=False, **args)[0]
    assert not torch.equal(outputs[1], exact)
    assert all(torch.isfinite(o).all() for o in outputs)


def test_a_new_shape_or_conditioning_refreshes_the_cache(unets: dict[str, Any]) -> None:
    unet = unets["base"]
    args = _inputs(unet)
    wrapper = DeepCacheUNet(unet, DeepCache(interval=100))
    with torch.inference_mode():
        wrapper(timestep=torch.tensor(900.0), **args)
        wrapper(timestep=torch.tensor(800.0), **args)  # cached
        assert wrapper.full_evaluations == 1
        switched = {**args, "encoder_hidden_states": args["encoder_hidden_states"] + 1}  # a prompt-editing switch
        wrapper(timestep=torch.tensor(700.0), **switched)
        assert wrapper.full_evaluations == 2
        wrapper(timestep=torch.tensor(600.0), **_inputs(unet, batch=4))  # another batch: its own features
        assert wrapper.full_evaluations == 3


# -- scope: one pass, never the loaded module ---------------------------------------------------------------
def test_for_pass_swaps_only_the_jobs_pipeline_and_restores_it(tiny_model: TinyModel) -> None:
    from diffusers import StableDiffusionXLPipeline

    loaded = StableDiffusionXLPipeline.from_pretrained(tiny_model.base, local_files_only=True)
    job = StableDiffusionXLPipeline(**loaded.components)
    unet = loaded.unet
    with for_pass(job, DeepCache()) as wrapper:
        assert job.unet is wrapper and loaded.unet is unet
        assert wrapper is not None and wrapper.config is unet.config  # the pipeline reads the module's config
    assert job.unet is unet
    assert "forward" not in vars(unet) and all("forward" not in vars(b) for b in unet.modules())
    with for_pass(job, None) as none:
        assert none is None and job.unet is unet


class _Control:
    sharing = 1

    def on_batch(self, batch_no: int) -> bool:
        return True

    def on_step(self, latents: Any) -> bool:
        return True

    def wait(self, seconds: float) -> bool:
        return True


def test_an_exact_job_after_a_deepcache_job_is_exact_again(tiny_model: TinyModel) -> None:
    """One set of loaded checkpoints, three jobs: exact, DeepCache (base + refiner), exact."""
    from sdxlpool.api.a1111 import Txt2ImgRequest
    from sdxlpool.api.generation import resolve_request
    from sdxlpool.worker.checkpoints import load_checkpoints
    from sdxlpool.worker.generate import RuntimeOptions, generate
    from sdxlpool.worker.samplers import resolve_sampler
    from sdxlpool.worker.settings import WorkerSettings, default_cache_dir

    settings = WorkerSettings(models=[tiny_model.base])
    loaded = load_checkpoints([tiny_model.base], tiny_model.refiner, device="cpu", dtype=torch.float32,
                              cache_dir=default_cache_dir())
    base, refiner = loaded.current, loaded.refiners[0]
    request = Txt2ImgRequest(**SMALL, subseed=1, refiner_checkpoint="refiner", refiner_switch_at=0.5)
    params = resolve_request(request, settings.defaults, settings.limits)
    sampler = resolve_sampler("Euler")

    def image(options: RuntimeOptions) -> np.ndarray:
        result = generate(base, refiner, params, sampler, options, _Control())
        return np.asarray(result.images[0], dtype=np.int16)

    before = image(RuntimeOptions())
    fast = image(RuntimeOptions(deepcache=DeepCache()))
    after = image(RuntimeOptions())
    assert np.array_equal(before, after)
    assert not np.array_equal(before, fast)
    assert _psnr(before, fast) >= MIN_PSNR


# -- through real workers ---------------------------------------------------------------------------------------
def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def _post(url: str, body: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    response = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200, response.text
    return pixels(response.json()["images"][0]), json.loads(response.json()["info"])


@pytest.fixture(scope="module")
def deepcache_worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    with start_worker(tiny_model, fast_mode="deepcache", max_queue=8, batch_max=4, batch_wait_ms=400) as server:
        server.wait_ready()
        yield server


PASSES = {
    "base": {},
    "base+refiner": {"refiner_checkpoint": "tiny/refiner", "refiner_switch_at": 0.5},
    "hires": {"enable_hr": True, "hr_scale": 1.5, "denoising_strength": 0.5, "hr_second_pass_steps": 4,
              "hr_upscaler": "Latent"},
}


@pytest.mark.parametrize("passes", sorted(PASSES))
def test_deepcache_changes_the_image_a_little_and_says_so(worker: ServerThread, deepcache_worker: ServerThread,
                                                          passes: str) -> None:
    body = {**SMALL, **PASSES[passes]}
    exact, exact_info = _post(worker.url, body)
    fast, fast_info = _post(deepcache_worker.url, body)
    assert exact_info["sdxlpool"]["fast_mode"] == "off" and fast_info["sdxlpool"]["fast_mode"] == "deepcache"
    assert not np.array_equal(exact, fast)
    assert _psnr(exact, fast) >= MIN_PSNR, _psnr(exact, fast)
    assert fast_info["infotexts"] == exact_info["infotexts"]  # the same request, described the same way
    assert httpx.get(deepcache_worker.url + "/readyz").json()["fast_mode"] == "deepcache"


def test_off_is_todays_image(worker: ServerThread, tiny_model: TinyModel) -> None:
    """`--fast-mode off` spelled out is the default worker, pixel for pixel."""
    with start_worker(tiny_model, models=[tiny_model.base], fast_mode="off", warmup=False) as off:
        off.wait_ready()
        a, info = _post(off.url, SMALL)
    b, _ = _post(worker.url, SMALL)
    assert np.array_equal(a, b) and info["sdxlpool"]["fast_mode"] == "off"


def test_a_deepcache_batch_equals_its_members_alone(deepcache_worker: ServerThread) -> None:
    """Rows of one batch share the schedule of full evaluations: each row is its solo DeepCache image
    up to float noise (the bound of test_batching)."""
    url = deepcache_worker.url
    bodies = [{**SMALL, "prompt": "a red cube", "seed": 31}, {**SMALL, "prompt": "a green tree", "seed": 32}]
    answers = _behind_blocker(url, bodies)
    for body, answer in zip(bodies, answers, strict=True):
        info = json.loads(answer.json()["info"])
        assert info["sdxlpool"]["batch_images"] == 2 and info["sdxlpool"]["fast_mode"] == "deepcache"
        alone, _ = _post(url, body)
        batched = pixels(answer.json()["images"][0])
        assert int(np.abs(batched - alone).max()) <= 2 and _psnr(batched, alone) >= 45, body
