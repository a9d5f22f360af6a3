"""Turn an A1111 txt2img or img2img request into checked, fully resolved generation parameters.

This is the "check inputs first, loudly" step of generation (diffusers' `check_inputs`), kept pure
so the worker and the gateway reject the same requests with the same messages (HTTP 422 naming the
field) before any queueing or GPU work. It also defines the pool's unit of work: a *normalised
step* is one denoising step of one 1024x1024 image, the unit of the `sdxl_worker_pending_steps`
metric the gateway routes on. img2img denoises only `denoising_strength` of its steps, and a hires
fix pass adds its own steps at its own size: `GenerationParams.normalised_steps` counts both, so
the gateway's expected completion time stays right for every kind of request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdxlpool.api.a1111 import Img2ImgRequest, ProcessingRequest, Txt2ImgRequest
from sdxlpool.api.ignored import ignored_fields
from sdxlpool.errors import InvalidRequest

__all__ = ["RequestLimits", "GenerationDefaults", "GenerationParams", "HiresParams", "Img2ImgParams",
           "resolve_request", "denoised_steps", "MAX_SEED", "LATENT_UPSCALE_MODES", "DEFAULT_HR_UPSCALER"]

MAX_SEED = 2**32 - 1  # A1111 seeds are unsigned 32-bit; -1 means "pick one"
_MIN_SIDE, _MAX_SIDE = 64, 8192
_CFG_RANGE = (1.0, 30.0)  # A1111's UI range; below 1 diffusers silently disables guidance
_REFERENCE_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class RequestLimits:
    max_steps: int = 150
    max_pixels: int = 2048 * 2048
    max_batch: int = 8  # images per request: batch_size x n_iter
    max_prompt_chars: int = 2000
    # An uploaded image (img2img, masks, extras) is resized to the job's size, so it may be larger
    # than max_pixels; this bounds the memory one decode can take.
    max_input_pixels: int = 6144 * 6144


@dataclass(frozen=True)
class GenerationDefaults:
    """What a field the client left out becomes (the pool's `spec.defaults`)."""

    sampler: str = "DPM++ SDE Karras"
    scheduler: str | None = None
    steps: int = 25
    cfg_scale: float = 7.0
    width: int = 1024
    height: int = 1024
    refiner_switch_at: float = 0.8


# A1111's latent upscalers for hires fix (`shared.latent_upscale_modes`): name -> (torch
# interpolate mode, antialias). Any other `hr_upscaler` is a pixel upscaler (Lanczos, Nearest, a model).
LATENT_UPSCALE_MODES: dict[str, tuple[str, bool]] = {
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
DEFAULT_HR_UPSCALER = "Latent"  # A1111's latent_upscale_default_mode, used when hr_upscaler is unset


def denoised_steps(steps: int, denoising_strength: float) -> int:
    """Steps an img2img pass really runs: the last `denoising_strength` of a `steps`-step schedule
    (diffusers and A1111 both take int(steps x strength)); at least one, so strength 0 still costs."""
    return max(1, min(steps, int(steps * denoising_strength)))


@dataclass(frozen=True)
class HiresParams:
    """Hires fix (txt2img `enable_hr`): the first pass's image upscaled to `upscale_width` x
    `upscale_height` by `upscaler`, cropped (centre) to `width` x `height` when both hr_resize_x/y
    were given with another aspect, then denoised again with `denoising_strength`."""

    upscale_width: int
    upscale_height: int
    width: int
    height: int
    upscaler: str
    steps: int  # the second pass's steps: hr_second_pass_steps, or the first pass's when 0
    denoising_strength: float
    sampler_name: str | None  # None: the first pass's
    scheduler: str | None
    prompt: str | None  # None: the first pass's
    negative_prompt: str | None
    # The request's own hires values, for the infotext (A1111 writes "Hires upscale" or "Hires resize:
    # XxY" as sent, and "Hires steps" / "Hires upscaler" only when the request set them).
    scale: float = 2.0
    resize_x: int = 0
    resize_y: int = 0
    steps_set: bool = True
    upscaler_set: bool = True

    @property
    def latent(self) -> bool:
        return self.upscaler in LATENT_UPSCALE_MODES

    @property
    def steps_run(self) -> int:
        """Steps the second pass really runs: all `steps` (A1111 stretches the schedule to
        steps / denoising_strength and runs its last `steps`), none at strength 0."""
        return self.steps if self.denoising_strength > 0 else 0


@dataclass(frozen=True)
class Img2ImgParams:
    """img2img's own fields, checked (the images themselves are decoded by the worker, `_images`)."""

    image_count: int
    denoising_strength: float
    resize_mode: int  # 0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale
    inpainting: bool  # a mask was given
    mask_blur_x: int = 4
    mask_blur_y: int = 4
    mask_round: bool = True
    inpainting_fill: int = 0  # 0 fill, 1 original, 2 latent noise, 3 latent nothing
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: bool = False
    initial_noise_multiplier: float = 1.0


@dataclass(frozen=True)
class GenerationParams:
    """A request after defaults, rounding and validation; seed may still be -1 (worker picks)."""

    prompt: str
    negative_prompt: str
    seed: int
    subseed: int
    subseed_strength: float
    sampler_name: str
    scheduler: str | None
    steps: int
    cfg_scale: float
    width: int
    height: int
    batch_size: int
    n_iter: int
    refiner_checkpoint: str | None
    refiner_switch_at: float
    send_images: bool
    override_settings: dict[str, Any] = field(default_factory=dict)
    ignored_fields: tuple[str, ...] = ()
    img2img: Img2ImgParams | None = None  # an img2img (or inpainting) request
    hires: HiresParams | None = None  # txt2img with hires fix

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    @property
    def first_pass_steps(self) -> int:
        """Steps the first (or only) pass really runs: all of them, or img2img's denoised part."""
        return self.steps if self.img2img is None else denoised_steps(self.steps, self.img2img.denoising_strength)

    @property
    def normalised_steps(self) -> float:
        """Denoising work in steps of one 1024x1024 image (the pending_steps metric's unit): the
        first pass at its size, plus the hires pass's steps (`HiresParams.steps_run`) at the hires size."""
        work = self.first_pass_steps * self.width * self.height
        if self.hires is not None:
            work += self.hires.steps_run * self.hires.width * self.hires.height
        return work * self.image_count / _REFERENCE_PIXELS


def _round_side(name: str, value: int) -> int:
    # A1111 builds an (h/8, w/8) latent, so anything that is not a multiple of 8 is floored to one.
    if not _MIN_SIDE <= value <= _MAX_SIDE:
        raise InvalidRequest(name, f"must be between {_MIN_SIDE} and {_MAX_SIDE} pixels, got {value}")
    return value - value % 8


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidRequest(name, f"must be between {low:g} and {high:g}, got {value:g}")


def resolve_request(
    request: ProcessingRequest, defaults: GenerationDefaults, limits: RequestLimits,
    *, init_size: tuple[int, int] | None = None,
) -> GenerationParams:
    """Apply defaults and limits; raise InvalidRequest naming the first bad field.

    An `Img2ImgRequest` also needs `init_size`, the first init image's (width, height): an img2img
    request without width/height makes images of that size (floored to a multiple of 8), where
    A1111 would make 512x512 ones.
    """
    for name in ("prompt", "negative_prompt"):
        text = getattr(request, name)
        if len(text) > limits.max_prompt_chars:
            raise InvalidRequest(name, f"is {len(text)} characters; the limit is {limits.max_prompt_chars}")
        if "\x00" in text:
            raise InvalidRequest(name, "contains a NUL character")
        if not text.isascii() and not _encodable(text):  # JSON's "\ud800": no UTF-8 (nor PNG text) has it
            raise InvalidRequest(name, "contains a lone surrogate (\\ud800-\\udfff), which is not valid Unicode")

    steps = defaults.steps if request.steps is None else request.steps
    _check_range("steps", steps, 1, limits.max_steps)
    cfg_scale = defaults.cfg_scale if request.cfg_scale is None else request.cfg_scale
    _check_range("cfg_scale", cfg_scale, *_CFG_RANGE)
    default_width, default_height = defaults.width, defaults.height
    if isinstance(request, Img2ImgRequest) and init_size is not None:
        default_width, default_height = (max(_MIN_SIDE, min(_MAX_SIDE, side)) for side in init_size)
    width = _round_side("width", default_width if request.width is None else request.width)
    height = _round_side("height", default_height if request.height is None else request.height)
    if width * height > limits.max_pixels:
        raise InvalidRequest(
            "width", f"{width}x{height} is {width * height} pixels; the limit is {limits.max_pixels}"
        )

    _check_range("batch_size", request.batch_size, 1, limits.max_batch)
    _check_range("n_iter", request.n_iter, 1, limits.max_batch)
    if request.batch_size * request.n_iter > limits.max_batch:
        raise InvalidRequest(
            "n_iter", f"batch_size x n_iter = {request.batch_size * request.n_iter} images; "
            f"the limit is {limits.max_batch} per request"
        )
    for name in ("seed", "subseed"):
        _check_range(name, getattr(request, name), -1, MAX_SEED)
    _check_range("subseed_strength", request.subseed_strength, 0.0, 1.0)
    switch_at = defaults.refiner_switch_at if request.refiner_switch_at is None else request.refiner_switch_at
    _check_range("refiner_switch_at", switch_at, 0.0, 1.0)

    sampler = request.sampler_name or request.sampler_index or defaults.sampler
    scheduler = request.scheduler if request.scheduler is not None else defaults.scheduler
    ignored = ignored_fields(request, sampler_name=sampler, width=width, height=height)
    img2img = _img2img(request, limits) if isinstance(request, Img2ImgRequest) else None
    hires = _hires(request, width, height, steps, limits) if isinstance(request, Txt2ImgRequest) else None
    return GenerationParams(
        prompt=request.prompt,
        negative_prompt=request.negative_prompt,
        seed=request.seed,
        subseed=request.subseed,
        subseed_strength=request.subseed_strength,
        sampler_name=sampler,
        scheduler=scheduler,
        steps=steps,
        cfg_scale=cfg_scale,
        width=width,
        height=height,
        batch_size=request.batch_size,
        n_iter=request.n_iter,
        refiner_checkpoint=request.refiner_checkpoint or None,
        refiner_switch_at=switch_at,
        send_images=request.send_images,
        override_settings=dict(request.override_settings or {}),
        ignored_fields=ignored,
        img2img=img2img,
        hires=hires,
    )


def _img2img(request: Img2ImgRequest, limits: RequestLimits) -> Img2ImgParams:
    images = request.init_images or []
    if not images:
        raise InvalidRequest("init_images", "needs at least one base64 image")
    if len(images) > limits.max_batch:
        raise InvalidRequest("init_images", f"has {len(images)} images; the limit is {limits.max_batch}")
    strength = 0.75 if request.denoising_strength is None else request.denoising_strength
    _check_range("denoising_strength", strength, 0.0, 1.0)
    _check_range("resize_mode", request.resize_mode, 0, 3)
    _check_range("inpainting_fill", request.inpainting_fill, 0, 3)
    _check_range("inpainting_mask_invert", request.inpainting_mask_invert, 0, 1)
    blur_x = request.mask_blur_x if request.mask_blur is None else request.mask_blur
    blur_y = request.mask_blur_y if request.mask_blur is None else request.mask_blur
    for name, blur in (("mask_blur_x", blur_x), ("mask_blur_y", blur_y)):
        _check_range("mask_blur" if request.mask_blur is not None else name, blur, 0, 256)
    _check_range("inpaint_full_res_padding", request.inpaint_full_res_padding, 0, 1024)
    multiplier = 1.0 if request.initial_noise_multiplier is None else request.initial_noise_multiplier
    _check_range("initial_noise_multiplier", multiplier, 0.0, 1.5)
    return Img2ImgParams(
        image_count=len(images), denoising_strength=strength, resize_mode=request.resize_mode,
        inpainting=bool(request.mask), mask_blur_x=blur_x, mask_blur_y=blur_y, mask_round=request.mask_round,
        inpainting_fill=request.inpainting_fill, inpaint_full_res=request.inpaint_full_res,
        inpaint_full_res_padding=request.inpaint_full_res_padding,
        inpainting_mask_invert=bool(request.inpainting_mask_invert), initial_noise_multiplier=multiplier,
    )


def _hires(request: Txt2ImgRequest, width: int, height: int, steps: int, limits: RequestLimits) -> HiresParams | None:
    """A1111's hires target (`calculate_target_resolution`): by hr_scale, or to hr_resize_x/y (one
    given: the other keeps the aspect; both: cover, then crop the middle)."""
    if not request.enable_hr:
        return None
    resize_x, resize_y = request.hr_resize_x, request.hr_resize_y
    if resize_x < 0 or resize_y < 0:
        raise InvalidRequest("hr_resize_x" if resize_x < 0 else "hr_resize_y", "must be 0 (unset) or a size in pixels")
    if resize_x == 0 and resize_y == 0:
        _check_range("hr_scale", request.hr_scale, 1.0, 8.0)
        up_w, up_h = int(width * request.hr_scale), int(height * request.hr_scale)
        target_w, target_h = up_w, up_h
    elif resize_y == 0:
        up_w, up_h = resize_x, resize_x * height // width
        target_w, target_h = up_w, up_h
    elif resize_x == 0:
        up_w, up_h = resize_y * width // height, resize_y
        target_w, target_h = up_w, up_h
    else:
        target_w, target_h = resize_x, resize_y
        if width / height < resize_x / resize_y:
            up_w, up_h = resize_x, resize_x * height // width
        else:
            up_w, up_h = resize_y * width // height, resize_y
    field = "hr_scale" if resize_x == 0 and resize_y == 0 else "hr_resize_x"
    up_w, up_h = _round_side(field, up_w), _round_side(field, up_h)
    target_w, target_h = _round_side(field, target_w), _round_side(field, target_h)
    if up_w * up_h > limits.max_pixels:
        raise InvalidRequest(field, f"hires size {up_w}x{up_h} is {up_w * up_h} pixels; the limit is {limits.max_pixels}")
    hr_steps = request.hr_second_pass_steps or steps
    _check_range("hr_second_pass_steps", hr_steps, 1, limits.max_steps)
    strength = 0.7 if request.denoising_strength is None else request.denoising_strength  # A1111's UI default
    _check_range("denoising_strength", strength, 0.0, 1.0)
    for name in ("hr_prompt", "hr_negative_prompt"):
        if len(getattr(request, name)) > limits.max_prompt_chars:
            raise InvalidRequest(name, f"is longer than {limits.max_prompt_chars} characters")
    return HiresParams(
        upscale_width=up_w, upscale_height=up_h, width=target_w, height=target_h,
        upscaler=request.hr_upscaler or DEFAULT_HR_UPSCALER, steps=hr_steps, denoising_strength=strength,
        sampler_name=_unless_same(request.hr_sampler_name), scheduler=_unless_same(request.hr_scheduler),
        prompt=request.hr_prompt or None, negative_prompt=request.hr_negative_prompt or None,
        scale=request.hr_scale, resize_x=resize_x, resize_y=resize_y, steps_set=bool(request.hr_second_pass_steps),
        upscaler_set=request.hr_upscaler is not None,
    )


def _unless_same(name: str | None) -> str | None:
    """A hires sampler or schedule: None (the first pass's) when unset or A1111's UI "Use same ..." choice."""
    return None if not name or name in ("Use same sampler", "Use same scheduler") else name
