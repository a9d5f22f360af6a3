"""Step arithmetic of a job's passes (pure): how many steps each pass runs, and the strengths and
schedule lengths that make diffusers run exactly those."""

from __future__ import annotations

from typing import Any

from sdxlpool.api.generation import GenerationParams
from sdxlpool.worker.samplers import SamplerChoice


def denoising_steps(params: GenerationParams) -> int:
    """Steps of the schedule a job's pass really runs: all of them for txt2img; for img2img the last
    int(steps x strength) (at least one, as A1111), none at strength 0 (the init image comes back)."""
    if params.img2img is not None and params.img2img.denoising_strength == 0:
        return 0
    return params.first_pass_steps


def _strength(steps_run: int, steps: int) -> float:
    """The strength that makes diffusers run exactly the last `steps_run` of `steps` (it takes
    int(steps x strength); half a step over keeps float rounding from losing one)."""
    return 1.0 if steps_run >= steps else (steps_run + 0.5) / steps


def hires_schedule(steps: int, denoising_strength: float) -> tuple[int, float]:
    """(num_inference_steps, strength) for diffusers' img2img so that it runs exactly `steps` steps,
    the last ones of a longer schedule, as A1111's hires pass does: A1111 stretches the schedule to
    int(steps / min(strength, 0.999)) and runs its last `steps`; diffusers runs the last
    int(n x strength), so the strength handed over is chosen to give exactly `steps`."""
    total = max(steps, int(steps / min(denoising_strength, 0.999)))
    return total, min(1.0, (steps + 0.5) / total)


def _iterations(loaded: Any, sampler: SamplerChoice, steps: int) -> int:
    """Model evaluations in a full run (A1111's step count for schedules; second-order: about 2x)."""
    scheduler = sampler.build(loaded.scheduler.config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)
