"""A1111's prompt language reaches the text encoders as A1111 encodes it: real HTTP, tiny model.

Weights, long prompts, BREAK, prompt editing (base and refiner), alternation, AND. Images are
compared pixel for pixel (PNG is lossless); "up to float noise" allows one level of 255.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import torch

from tests.worker.imaging import pixels

BODY = {"seed": 11, "steps": 4, "width": 64, "height": 64, "sampler_name": "Euler"}


def image(client: httpx.Client, prompt: str, **body) -> tuple[np.ndarray, dict]:
    response = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": prompt, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return pixels(data["images"][0]), json.loads(data["info"])


def same(a: np.ndarray, b: np.ndarray, noise: int = 0) -> bool:
    return int(np.abs(a - b).max()) <= noise


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    """Any pixel differs. Exact: a text's features do not depend on the texts encoded beside it."""
    return not np.array_equal(a, b)


def test_attention_weights_as_a1111(client: httpx.Client) -> None:
    plain, _ = image(client, "a red cat")
    assert same(image(client, "a (red:1.0) cat")[0], plain)
    assert same(image(client, "a (red) cat")[0], image(client, "a (red:1.1) cat")[0])
    assert same(image(client, "a [red] cat")[0], image(client, "a (red:0.9090909) cat")[0], noise=1)
    assert differs(image(client, "a (red:1.5) cat")[0], plain)


def test_tokens_after_the_first_75_count(client: httpx.Client) -> None:
    head = "a " * 76  # 76 tokens of the tiny BPE: the endings fall in the second chunk
    assert differs(image(client, head + "red cat on a chair")[0], image(client, head + "blue dog in snow")[0])


def test_break_starts_a_new_chunk(client: httpx.Client) -> None:
    assert differs(image(client, "a red BREAK cat")[0], image(client, "a red cat")[0])


def test_scheduled_prompt_equals_the_hand_built_switch(client: httpx.Client, tiny_model) -> None:
    from diffusers import StableDiffusionXLPipeline

    from sdxlpool.prompts.schedules import prompt_schedule
    from sdxlpool.worker.conditioning import encode_group, pipeline_encoders
    from sdxlpool.worker.generate import _decode
    from sdxlpool.worker.samplers import resolve_sampler

    scheduled, _ = image(client, "a [cat:dog:0.5]")
    assert differs(scheduled, image(client, "a cat")[0]) and differs(scheduled, image(client, "a dog")[0])
    assert prompt_schedule("a [cat:dog:0.5]", 4) == [(2, "a cat"), (4, "a dog")]  # steps 0-2 cat, 3 dog

    # By hand: each half encoded alone, an empty negative prompt as zeros, switched after step 2.
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model.base, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = resolve_sampler("Euler").build(pipe.scheduler.config, image_seeds=[BODY["seed"]])
    with torch.inference_mode():
        cat, dog = (encode_group([text], pipeline_encoders(pipe))[0] for text in ("a cat", "a dog"))
        zeros, zeros_pooled = torch.zeros_like(cat.embeds), torch.zeros_like(cat.pooled)

        def switch(_pipe, index, _timestep, tensors):
            if index == 2:
                tensors["prompt_embeds"] = torch.stack([zeros, dog.embeds])
                tensors["add_text_embeds"] = torch.stack([zeros_pooled, dog.pooled])
            return tensors

        shape = (pipe.unet.config.in_channels, 64 // pipe.vae_scale_factor, 64 // pipe.vae_scale_factor)
        latents = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(BODY["seed"]))[None]
        out = pipe(prompt_embeds=cat.embeds[None], pooled_prompt_embeds=cat.pooled[None],
                   negative_prompt_embeds=zeros[None], negative_pooled_prompt_embeds=zeros_pooled[None],
                   num_inference_steps=4, guidance_scale=7.0, width=64, height=64, latents=latents,
                   output_type="latent", callback_on_step_end=switch,
                   callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "add_text_embeds"]).images
        (by_hand,) = _decode(pipe, out)
    assert same(scheduled, np.asarray(by_hand.convert("RGB"), dtype=np.int16))


def test_refiner_steps_count_on_from_the_base(client: httpx.Client) -> None:
    refiner = {"refiner_checkpoint": "tiny/refiner", "refiner_switch_at": 0.5}
    # Base: steps 0-1; refiner: steps 2-3. "cat" up to step 2, "dog" from step 3: in the refiner.
    switched, _ = image(client, "a [cat:dog:2]", **refiner)
    assert differs(switched, image(client, "a cat", **refiner)[0])
    assert differs(switched, image(client, "a dog", **refiner)[0])


def test_alternation_differs_from_either_option(client: httpx.Client) -> None:
    alternating, _ = image(client, "a [cat|dog]")
    assert differs(alternating, image(client, "a cat")[0]) and differs(alternating, image(client, "a dog")[0])


def test_and_and_hypernetworks_are_reported(client: httpx.Client) -> None:
    composed, info = image(client, "a cat AND a dog <hypernet:h:1>")
    assert info["sdxlpool"]["ignored"] == ["prompt: <hypernet:h:1> (hypernetworks are not supported)",
                                           "prompt: AND (composable diffusion is not supported)"]
    assert same(composed, image(client, "a cat, a dog")[0])  # sub-prompts encoded as one text
    _, info = image(client, "(a cat:1.2), [b]")
    assert info["sdxlpool"]["ignored"] == []


def test_malformed_network_call_is_a_422_naming_the_prompt(client: httpx.Client) -> None:
    response = client.post("/sdapi/v1/txt2img", json={**BODY, "prompt": "a <lora:x:strong>"})
    assert response.status_code == 422 and "prompt" in response.text


def test_emphasis_scales_the_tokens_then_restores_each_encoders_mean(tiny_model) -> None:
    from diffusers import StableDiffusionXLPipeline

    from sdxlpool.worker.conditioning import encode_group, pipeline_encoders

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model.base, local_files_only=True)
    encoders = pipeline_encoders(pipe)
    with torch.inference_mode():
        (plain,) = encode_group(["a red cat"], encoders)
        (weighted,) = encode_group(["a (red:1.5) cat"], encoders)
        (long_cat,) = encode_group(["a " * 80 + "cat"], encoders)
        (long_dog,) = encode_group(["a " * 80 + "dog"], encoders)
        (first_chunk,) = encode_group(["a " * 75], encoders)
    red = 2  # start token, "a", then "red" (one token each in the tiny BPE)
    width_l = encoders[0].model.config.hidden_size
    for features in (slice(0, width_l), slice(width_l, None)):  # each encoder on its own, as A1111
        p, w = plain.embeds[:, features], weighted.embeds[:, features]
        assert torch.allclose(w.mean(), p.mean(), rtol=1e-5, atol=1e-7)  # the mean restored
        scale = (w[1] / p[1]).mean()  # every token rescaled alike to restore the mean ...
        assert scale != 1.0 and torch.allclose(w[1], p[1] * scale, rtol=1e-4)
        assert torch.allclose(w[red], p[red] * 1.5 * scale, rtol=1e-4)  # ... and "red" 1.5 times more
    assert torch.equal(weighted.pooled, plain.pooled)  # the pooled embedding is never weighted
    # Long prompts: all chunks' tokens, but the pooled embedding of the first chunk only.
    assert long_cat.chunks == 2 and not torch.equal(long_cat.embeds, long_dog.embeds)
    # (allclose: a batch of two chunks and a batch of one may round differently in the last bit)
    for long in (long_cat, long_dog):
        assert torch.allclose(long.pooled, first_chunk.pooled, rtol=1e-5, atol=1e-6)
