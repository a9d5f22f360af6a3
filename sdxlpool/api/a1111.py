"""The AUTOMATIC1111 v1.9/1.10 txt2img wire format, shared by the worker and the gateway.

Field names, types and meanings are A1111's (`modules/api/models.py`,
`StableDiffusionTxt2ImgProcessingAPI`), so every existing A1111 client works unchanged. Two
deliberate differences, both in the client's favour:

* fields a client leaves out take the *pool's* defaults (an SDXL pool wants 1024x1024 and its own
  sampler, not A1111's SD1.5-era 512x512 / Euler / 50 steps), so they are `None` here and resolved
  by the server;
* unknown extra fields are kept, not rejected, because A1111 clients send script and extension
  fields freely. Fields we accept but do not act on are reported back in `info.sdxlpool.ignored`.

Pure data: no I/O, no torch.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Txt2ImgRequest", "Txt2ImgResponse", "ProgressState", "ProgressResponse", "INERT_FIELDS"]


class Txt2ImgRequest(BaseModel):
    """POST /sdapi/v1/txt2img body."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0.0
    seed_resize_from_h: int = -1
    seed_resize_from_w: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None  # pre-1.6 clients send the sampler here
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    restore_faces: bool | None = None
    tiling: bool | None = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    eta: float | None = None
    denoising_strength: float | None = None
    s_min_uncond: float | None = None
    s_churn: float | None = None
    s_tmax: float | None = None
    s_tmin: float | None = None
    s_noise: float | None = None
    override_settings: dict[str, Any] | None = None
    override_settings_restore_afterwards: bool = True
    refiner_checkpoint: str | None = None
    refiner_switch_at: float | None = None
    disable_extra_networks: bool = False
    firstpass_image: str | None = None
    comments: dict[str, Any] | None = None
    enable_hr: bool = False
    firstphase_width: int = 0
    firstphase_height: int = 0
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0
    hr_checkpoint_name: str | None = None
    hr_sampler_name: str | None = None
    hr_scheduler: str | None = None
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    force_task_id: str | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None


# Accepted for compatibility but never applied here; listed in info.sdxlpool.ignored when not off
# (false, null or ""). The fields whose effect depends on others (eta, s_*, seed_resize_from_*,
# alwayson_scripts, override_settings) have their rules in `sdxlpool.api.ignored`.
INERT_FIELDS: dict[str, Any] = {
    "restore_faces": False,
    "tiling": False,
    "enable_hr": False,
    "firstpass_image": None,
    "infotext": None,
    "script_name": None,
}


class Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64-encoded PNGs; empty when send_images is false")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string: seeds, resolved parameters, infotexts, sdxlpool placement")


class ProgressState(BaseModel):
    skipped: bool = False
    interrupted: bool = False
    stopping_generation: bool = False
    job: str = ""
    job_count: int = 0
    job_timestamp: str = "0"
    job_no: int = 0
    sampling_step: int = 0
    sampling_steps: int = 0


class ProgressResponse(BaseModel):
    progress: float = Field(ge=0, le=1)
    eta_relative: float
    state: ProgressState
    current_image: str | None = None
    textinfo: str | None = None
