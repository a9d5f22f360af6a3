"""Initial noise, drawn on the CPU from each image's seed, and latents noised to a timestep."""

from __future__ import annotations

from typing import Any

from sdxlpool.api.generation import GenerationParams


def image_seeds(first: int, count: int) -> list[int]:
    """A1111 numbers the images of a request seed, seed + 1, ... (wrapping at 2**32)."""
    return [(first + i) % 2**32 for i in range(count)]


def _initial_noise(
    pipe: Any, params: GenerationParams, seeds: list[int], subseeds: list[int], ensd: int
) -> tuple[Any, list[Any]]:
    """A1111's noise: randn(seed), slerped towards randn(subseed) by subseed_strength."""
    import torch

    shape = (pipe.unet.config.in_channels, params.height // pipe.vae_scale_factor,
             params.width // pipe.vae_scale_factor)
    noise, generators = [], []
    for seed, subseed in zip(seeds, subseeds, strict=True):
        generator = torch.Generator("cpu").manual_seed(seed)
        sample = torch.randn(shape, generator=generator)
        if params.subseed_strength > 0:
            sub = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed))
            sample = _slerp(params.subseed_strength, sample, sub)
        if ensd:
            generator.manual_seed(seed + ensd)  # ancestral step noise starts from seed + ENSD
        noise.append(sample)
        generators.append(generator)
    return torch.stack(noise).to(pipe.unet.dtype), generators


def _slerp(t: float, low: Any, high: Any) -> Any:
    """Spherical interpolation, as A1111 uses for variation seeds."""
    import torch

    low_norm = low / torch.norm(low)
    high_norm = high / torch.norm(high)
    dot = (low_norm * high_norm).sum()
    if dot.abs() > 0.9995:
        return low * (1 - t) + high * t
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return torch.sin((1.0 - t) * omega) / so * low + torch.sin(t * omega) / so * high


def _noised(scheduler: Any, latents: Any, noise: Any, total: int, steps: int, device: Any = None) -> Any:
    """`latents` with `noise` added at the first timestep of the last `steps` of a `total`-step
    schedule: what the img2img pipeline adds itself (its `get_timesteps`), but from the noise drawn
    here. `scheduler`: one built for the pass (its timesteps are set here, on `device`)."""
    scheduler.set_timesteps(total, device=device)
    start = (total - steps) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    timestep = scheduler.timesteps[start:start + 1].repeat(latents.shape[0])
    return scheduler.add_noise(latents, noise.to(latents.dtype), timestep)
