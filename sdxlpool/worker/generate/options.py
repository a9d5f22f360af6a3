"""What a job is given and gives back: its runtime options, its control (progress, interrupt), its result."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sdxlpool.worker.deepcache import DeepCache
from sdxlpool.worker.samplers import SamplerChoice


class JobControl(Protocol):
    sharing: int  # jobs in the model call this job's iterations run in (a batch's runner sets it)

    def on_batch(self, batch_no: int) -> bool:
        """Called before each batch; False: the job was interrupted, make no more batches."""
        ...

    def on_step(self, latents: Any) -> bool:
        """Called after each denoising step; False stops the batch at this step (an interrupt stops
        the job too: the next `on_batch` says so; a skip only ends this batch)."""
        ...

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (for engines that wait rather than compute); False once interrupted."""
        ...


@dataclass(frozen=True)
class RuntimeOptions:
    """A1111 options that change generation (global, or per request via override_settings)."""

    clip_skip: int = 1  # CLIP_stop_at_last_layers: 1 = use the last layer
    eta_noise_seed_delta: int = 0  # ENSD: offsets the seed of ancestral samplers' step noise
    refiner_aesthetic_score: float = 6.0  # sdxl_refiner_high_aesthetic_score
    refiner_negative_aesthetic_score: float = 2.5  # sdxl_refiner_low_aesthetic_score
    # What the job uses besides the checkpoints, resolved by the service before the job is queued.
    loras: tuple[Any, ...] = ()  # the prompt's LoRAs with their multipliers (worker.loras.LoraUse)
    # The prompt as the client wrote it, <lora:...> calls included, for the infotext (A1111 keeps
    # them there); the params' prompt is the text the encoders see. None: the params' prompt.
    infotext_prompt: str | None = None
    vae: Any = None  # an AutoencoderKL chosen by sd_vae; None: the checkpoint's own
    vae_name: str | None = None  # that VAE's file name and short hash, for the infotext
    vae_hash: str | None = None
    embeddings: Any = None  # the textual-inversion embeddings a prompt may name (worker.embeddings)
    # img2img (params.img2img): the decoded init images (PIL, cycled over the batch as A1111 does)
    # and the inpainting mask (PIL) when the request has one.
    init_images: tuple[Any, ...] = ()
    mask: Any = None
    # hires fix (params.hires): the second pass's sampler (hr_sampler_name/hr_scheduler, else the
    # first pass's), the pixel upscaler (worker.upscalers.UpscalerEntry; None for the latent modes)
    # and what runs a model upscaler (ModelUpscalers.run), all resolved by the service.
    hires_sampler: SamplerChoice | None = None
    hires_upscaler: Any = None
    upscale_model: Any = None
    # The opt-in fast mode (--fast-mode): DeepCache's parameters, or None for the exact path. Per
    # job: each pass of the job gets its own cache (worker.deepcache.for_pass).
    deepcache: DeepCache | None = None

    @property
    def fast_mode(self) -> str:
        """The mode's name (api/fast_modes.py) for info.sdxlpool.fast_mode."""
        return "off" if self.deepcache is None else "deepcache"


@dataclass
class GenerationResult:
    images: list[Any]  # PIL images
    seeds: list[int]
    subseeds: list[int]
    infotexts: list[str]
    interrupted: bool
    seconds: float
    steps_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

