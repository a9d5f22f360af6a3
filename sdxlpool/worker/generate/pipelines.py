"""A job's pipeline objects over the loaded modules, and the VAE both ways (pixels <-> latents)."""

from __future__ import annotations

from typing import Any

from sdxlpool.worker.samplers import SamplerChoice


def _job_pipeline(loaded: Any, sampler: SamplerChoice, seeds: list[int], *, img2img: bool = False) -> Any:
    """A pipeline object over the loaded modules with this job's scheduler (`img2img`: diffusers'
    SDXL img2img pipeline over a base's modules, for img2img's passes and the hires pass).

    Like diffusers' `from_pipe` without its dtype/device pass and progress bars: the modules are
    the same objects, only the scheduler and the pipeline's own flags are per job.
    """
    from diffusers import StableDiffusionXLImg2ImgPipeline

    flags = {k: v for k, v in loaded.config.items() if not k.startswith("_") and k not in loaded.components}
    scheduler = sampler.build(loaded.scheduler.config, image_seeds=seeds)
    cls: Any = StableDiffusionXLImg2ImgPipeline if img2img else type(loaded)
    pipe = cls(**{**loaded.components, "scheduler": scheduler}, **flags)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _decode(pipe: Any, latents: Any, vae: Any = None) -> list[Any]:
    """VAE decode as the SDXL pipeline does it (the loader keeps an fp16 model's VAE in fp32).

    `vae`: the one chosen by sd_vae (RuntimeOptions.vae); None: the checkpoint's own."""
    vae = vae if vae is not None else pipe.vae
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    mean, std = _latents_mean_std(vae, latents)
    if mean is not None and std is not None:
        latents = latents * std / vae.config.scaling_factor + mean
    else:
        latents = latents / vae.config.scaling_factor
    decoded = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")


def _encode(pipe: Any, images: list[Any], vae: Any = None) -> Any:
    """PIL images of one size to latents, the inverse of `_decode`, from the image processor's pixels."""
    vae = vae if vae is not None else pipe.vae
    return _encode_pixels(vae, pipe.image_processor.preprocess(images))


def _encode_pixels(vae: Any, pixels: Any) -> Any:
    """Pixels in [-1, 1], (N, 3, H, W), through the VAE: the latent distribution's mean (the same
    latents on every GPU), scaled as the SDXL pipelines scale them.

    The pixels' memory layout is kept: the VAE's convolutions give other floats for a channels-last
    tensor (the image processor's) than for a channels-first one (img2img's init images)."""
    pixels = pixels.to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.mode()
    mean, std = _latents_mean_std(vae, latents)
    if mean is not None and std is not None:
        return (latents - mean) * vae.config.scaling_factor / std
    return latents * vae.config.scaling_factor


def _latents_mean_std(vae: Any, like: Any) -> tuple[Any, Any]:
    """The VAE's per-channel latents mean and std (SDXL's VAE has none: (None, None)), as `like`."""
    import torch

    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None, None
    return torch.tensor(mean).view(1, -1, 1, 1).to(like), torch.tensor(std).view(1, -1, 1, 1).to(like)
