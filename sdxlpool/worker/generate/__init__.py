"""One txt2img or img2img job on SDXL base (+ refiner): `generate()` (in `job`, which lists its
steps) and what callers use around it.

Modules by concern: `job` (the `generate` call, read top to bottom), `options` (what a job is
given and gives back), `steps` (pure step arithmetic), `noise` (initial noise, noising to a
timestep), `pipelines` (per-job pipeline objects, the VAE both ways), `passes` (the shared
denoising step and its step-end callbacks), `batch` (queued requests as one model batch), `img2img` (init latents, inpainting), `hires` (the
hires pass) and `infotext_fields` (each image's A1111 infotext fields).
"""

from sdxlpool.worker.generate.batch import BatchMember, batch_key, generate_batch
from sdxlpool.worker.generate.infotext_fields import hires_infotext, image_infotext
from sdxlpool.worker.generate.job import generate
from sdxlpool.worker.generate.noise import image_seeds
from sdxlpool.worker.generate.options import GenerationResult, JobControl, RuntimeOptions
from sdxlpool.worker.generate.pipelines import _decode as _decode  # for tests/worker/test_prompt_encoding.py
from sdxlpool.worker.generate.steps import denoising_steps, hires_schedule

__all__ = ["JobControl", "RuntimeOptions", "GenerationResult", "generate", "image_seeds", "image_infotext",
           "denoising_steps", "hires_schedule", "hires_infotext", "BatchMember", "batch_key", "generate_batch"]
