"""Turn an A1111 txt2img request into checked, fully resolved generation parameters.

This is the "check inputs first, loudly" step of generation (diffusers' `check_inputs`), kept pure
so the worker and the gateway reject the same requests with the same messages (HTTP 422 naming the
field) before any queueing or GPU work. It also defines the pool's unit of work: a *normalised
step* is one denoising step of one 1024x1024 image, the unit of the `sdxl_worker_pending_steps`
metric the gateway routes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sdxlpool.api.a1111 import Txt2ImgRequest
from sdxlpool.api.ignored import ignored_fields
from sdxlpool.errors import InvalidRequest

__all__ = ["RequestLimits", "GenerationDefaults", "GenerationParams", "resolve_request", "MAX_SEED"]

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

    @property
    def image_count(self) -> int:
        return self.batch_size * self.n_iter

    @property
    def normalised_steps(self) -> float:
        """Denoising work in steps of one 1024x1024 image (the pending_steps metric's unit)."""
        return self.steps * self.image_count * self.width * self.height / _REFERENCE_PIXELS


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
    request: Txt2ImgRequest, defaults: GenerationDefaults, limits: RequestLimits
) -> GenerationParams:
    """Apply defaults and limits; raise InvalidRequest naming the first bad field."""
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
    width = _round_side("width", defaults.width if request.width is None else request.width)
    height = _round_side("height", defaults.height if request.height is None else request.height)
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
    )
