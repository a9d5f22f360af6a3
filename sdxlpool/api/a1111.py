"""The AUTOMATIC1111 v1.9/1.10 wire format (txt2img, img2img, extras, png-info), shared by the
worker and the gateway.

Field names, types and meanings are A1111's (`modules/api/models.py`:
`StableDiffusionTxt2ImgProcessingAPI`, `StableDiffusionImg2ImgProcessingAPI`, the extras and
png-info models), so every existing A1111 client works unchanged. Two
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

__all__ = ["ProcessingRequest", "Txt2ImgRequest", "Img2ImgRequest", "Txt2ImgResponse", "Img2ImgResponse",
           "ExtrasSingleImageRequest", "ExtrasBatchImagesRequest", "ExtrasFile", "ExtrasSingleImageResponse",
           "ExtrasBatchImagesResponse", "PngInfoRequest", "PngInfoResponse", "ProgressState", "ProgressResponse",
           "INERT_FIELDS"]


class ProcessingRequest(BaseModel):
    """The fields txt2img and img2img share (A1111's `StableDiffusionProcessing`)."""

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
    comments: dict[str, Any] | None = None
    force_task_id: str | None = None
    script_name: str | None = None
    script_args: list[Any] = Field(default_factory=list)
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: dict[str, Any] = Field(default_factory=dict)
    infotext: str | None = None


class Txt2ImgRequest(ProcessingRequest):
    """POST /sdapi/v1/txt2img body. `denoising_strength` and the `hr_*` fields act with `enable_hr`
    (hires fix: a second, img2img pass at the larger size)."""

    firstpass_image: str | None = None
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


class Img2ImgRequest(ProcessingRequest):
    """POST /sdapi/v1/img2img body: img2img, and inpainting when `mask` is given. Images are base64
    (PNG, JPEG or WebP; a `data:image/...;base64,` URL too). A1111's defaults."""

    init_images: list[str] | None = None
    resize_mode: int = 0  # 0 just resize, 1 crop and resize, 2 resize and fill, 3 just resize (latent upscale)
    denoising_strength: float | None = 0.75
    image_cfg_scale: float | None = None
    mask: str | None = None
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_blur: int | None = None  # when set, both of the above
    mask_round: bool = True
    inpainting_fill: int = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = True  # "only masked": work on the mask's region at the full size, paste back
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0  # 1: inpaint what the mask leaves black
    initial_noise_multiplier: float | None = None
    latent_mask: str | None = None
    include_init_images: bool = Field(default=False, exclude=True)  # A1111: echo them in `parameters`


# Accepted for compatibility but never applied here; listed in info.sdxlpool.ignored when not off
# (false, null or ""). The fields whose effect depends on others (eta, s_*, seed_resize_from_*,
# alwayson_scripts, override_settings) have their rules in `sdxlpool.api.ignored`.
INERT_FIELDS: dict[str, Any] = {
    "restore_faces": False,
    "tiling": False,
    "firstpass_image": None,  # txt2img only
    "infotext": None,
    "script_name": None,
    "latent_mask": None,  # img2img only: the mask's own blurred, resized form is the latent mask
}


class Txt2ImgResponse(BaseModel):
    images: list[str] = Field(description="base64-encoded PNGs; empty when send_images is false")
    parameters: dict[str, Any]
    info: str = Field(description="JSON string: seeds, resolved parameters, infotexts, sdxlpool placement")


class Img2ImgResponse(Txt2ImgResponse):
    pass


class _ExtrasRequest(BaseModel):
    """What both extras routes take (A1111's `ExtrasBaseRequest`); face restoration has no weights here."""

    resize_mode: int = Field(default=0, ge=0, le=1, description="0: by upscaling_resize; 1: to upscaling_resize_w x _h")
    show_extras_results: bool = True
    gfpgan_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    codeformer_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    codeformer_weight: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    upscaling_resize: float = Field(default=2, gt=0)
    upscaling_resize_w: int = Field(default=512, ge=1)
    upscaling_resize_h: int = Field(default=512, ge=1)
    upscaling_crop: bool = True
    upscaler_1: str = "None"
    upscaler_2: str = "None"
    extras_upscaler_2_visibility: float = Field(default=0, ge=0, le=1, allow_inf_nan=False)
    upscale_first: bool = False


class ExtrasSingleImageRequest(_ExtrasRequest):
    """POST /sdapi/v1/extra-single-image."""

    image: str = ""


class ExtrasFile(BaseModel):
    data: str
    name: str


class ExtrasBatchImagesRequest(_ExtrasRequest):
    """POST /sdapi/v1/extra-batch-images."""

    imageList: list[ExtrasFile]  # noqa: N815 - A1111's name


class ExtrasSingleImageResponse(BaseModel):
    html_info: str
    image: str | None = None


class ExtrasBatchImagesResponse(BaseModel):
    html_info: str
    images: list[str]


class PngInfoRequest(BaseModel):
    """POST /sdapi/v1/png-info."""

    image: str


class PngInfoResponse(BaseModel):
    info: str = Field(description="the infotext (the PNG's `parameters` text), empty when it has none")
    items: dict[str, Any] = Field(description="the image's other text chunks and info")
    parameters: dict[str, Any] = Field(description="the infotext parsed into fields, as A1111's paste does")


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
