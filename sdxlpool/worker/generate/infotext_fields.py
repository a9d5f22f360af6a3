"""The infotext of each image, in A1111's format (the fields; `worker.infotext` writes them out)."""

from __future__ import annotations

from typing import Any

from sdxlpool.api.generation import GenerationParams
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.img2img_inputs import Img2ImgInputs
from sdxlpool.worker.infotext import format_infotext
from sdxlpool.worker.samplers import SamplerChoice


def image_infotext(
    params: GenerationParams,
    sampler: SamplerChoice,
    base: Checkpoint,
    refiner: Checkpoint | None,
    seed: int,
    subseed: int,
    index: int,
    *,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    lora_hashes: str | None = None,
    extra: dict[str, Any] | None = None,
    hires_sampler: SamplerChoice | None = None,
) -> str:
    """The A1111 infotext of image `index` of a job (refiner: None when it was not used; vae_*: the
    VAE chosen by sd_vae, None for the checkpoint's own; lora_hashes: "name: hash, ..." of the LoRAs
    applied, as A1111's Lora extension writes them; extra: img2img's A1111 extra_generation_params,
    "Denoising strength" in A1111's place, the inpainting keys after the refiner's; hires_sampler:
    the hires pass's, with params.hires).

    Size is the first pass's, as A1111 writes it; the hires fields follow A1111's txt2img `init`."""
    hires = params.hires
    extra = dict(extra or {})
    denoising = extra.pop("Denoising strength", None)
    if denoising is None and hires is not None:
        denoising = f"{hires.denoising_strength:g}"
    fields: dict[str, Any] = {
        "Steps": params.steps,
        "Sampler": sampler.sampler.name,
        "Schedule type": sampler.schedule.label if sampler.schedule.name != "automatic" else None,
        "CFG scale": f"{params.cfg_scale:g}",
        "Seed": seed,
        "Size": f"{params.width}x{params.height}",
        "Model hash": base.short_hash,
        "Model": base.model_name,
        "VAE hash": vae_hash,
        "VAE": vae_name,
        "Variation seed": subseed if params.subseed_strength > 0 else None,
        "Variation seed strength": f"{params.subseed_strength:g}" if params.subseed_strength > 0 else None,
        "Denoising strength": denoising,
        "Batch size": params.batch_size if params.batch_size > 1 else None,
        "Batch pos": index % params.batch_size if params.batch_size > 1 else None,
        **(hires_infotext(params, sampler, hires_sampler or sampler) if hires is not None else {}),
        "Refiner": f"{refiner.model_name} [{refiner.short_hash}]" if refiner else None,
        "Refiner switch at": f"{params.refiner_switch_at:g}" if refiner else None,
        "Hires refiner": "first pass" if refiner and hires is not None else None,
        **extra,
        "Lora hashes": lora_hashes,
        "Version": "sdxlpool",
    }
    return format_infotext(params.prompt, params.negative_prompt, fields)


def hires_infotext(params: GenerationParams, sampler: SamplerChoice, hires_sampler: SamplerChoice) -> dict[str, Any]:
    """The hires fields of an infotext, in A1111's order and with its rules: the sampler and
    schedule type when they differ from the first pass's, the prompts when given and different,
    "Hires upscale" (by hr_scale) or "Hires resize" (as sent), and steps and upscaler when set."""
    hires = params.hires
    assert hires is not None
    first_schedule = sampler.schedule.label if sampler.schedule.name != "automatic" else None
    hires_schedule_label = hires_sampler.schedule.label if hires_sampler.schedule.name != "automatic" else None
    by_scale = hires.resize_x == 0 and hires.resize_y == 0
    return {
        "Hires sampler": hires_sampler.sampler.name if hires_sampler.sampler.name != sampler.sampler.name else None,
        "Hires prompt": hires.prompt if hires.prompt not in (None, params.prompt) else None,
        "Hires negative prompt": (hires.negative_prompt if hires.negative_prompt not in (None, params.negative_prompt)
                                  else None),
        "Hires schedule type": hires_schedule_label if hires_schedule_label != first_schedule else None,
        "Hires upscale": f"{hires.scale:g}" if by_scale else None,
        "Hires resize": None if by_scale else f"{hires.resize_x}x{hires.resize_y}",
        "Hires steps": hires.steps if hires.steps_set else None,
        "Hires upscaler": hires.upscaler if hires.upscaler_set else None,
    }


def _generation_params(params: GenerationParams, inputs: Img2ImgInputs | None) -> dict[str, Any]:
    """A1111's extra_generation_params of an img2img job (none for txt2img)."""
    if inputs is None or params.img2img is None:
        return {}
    extra = dict(inputs.generation_params)
    if params.img2img.initial_noise_multiplier != 1.0:
        extra["Noise multiplier"] = params.img2img.initial_noise_multiplier
    return extra
