"""The kinds of request the gateway routes to a worker, and how each is checked before routing.

    txt2img              /sdapi/v1/txt2img             generation: seeds, `info` JSON
    img2img              /sdapi/v1/img2img             generation: seeds, `info` JSON
    extra-single-image   /sdapi/v1/extra-single-image  one image upscaled: no seed, no `info`
    extra-batch-images   /sdapi/v1/extra-batch-images  several images upscaled: no seed, no `info`
    png-info             /sdapi/v1/png-info            an image's infotext read back: no seed, no `info`

Every kind goes the same way (service.py `GatewayService.route`, forward.py `forward`): checked here
first (a bad field or image is a 422 naming it, before any routing), then GPU choice, failover,
placement headers. `check` is pure apart from reading image headers: it never decodes pixels, and
reads a large upload's header from the start of its base64 (`sdxlpool._images.probe_image`).

What `check` returns is what routing needs: the request's cost in normalised steps (one denoising
step of one 1024x1024 image, the unit of the workers' pending_steps), the LoRAs its prompt calls
(the lora_affinity scorer), and the fields it would not apply (strict mode). A generation costs its
`GenerationParams.normalised_steps` (img2img: only the denoised part; hires fix: both passes);
extras and png-info, which run no denoising, a small nominal cost per image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from sdxlpool._images import ImageHeader, check_mask_size, probe_image
from sdxlpool.api.a1111 import (
    ExtrasBatchImagesRequest,
    ExtrasSingleImageRequest,
    Img2ImgRequest,
    PngInfoRequest,
    Txt2ImgRequest,
)
from sdxlpool.api.generation import GenerationDefaults, GenerationParams, RequestLimits, resolve_request
from sdxlpool.errors import InvalidRequest
from sdxlpool.prompts import LORA_KINDS, extract_networks

__all__ = ["RequestKind", "Checked", "KINDS", "TXT2IMG", "IMG2IMG", "EXTRA_SINGLE_IMAGE", "EXTRA_BATCH_IMAGES",
           "PNG_INFO", "kind_of_path", "EXTRAS_COST_PER_IMAGE", "PNG_INFO_COST", "checked_model"]

EXTRAS_COST_PER_IMAGE = 0.5  # normalised steps: an upscale is a fraction of one denoising step's work
PNG_INFO_COST = 0.05  # reading a PNG's text chunks


@dataclass(frozen=True)
class Checked:
    """A request that passed the gateway's checks: what routing and strict mode need of it."""

    cost: float  # normalised steps
    loras: frozenset[str] = frozenset()
    ignored_fields: tuple[str, ...] = ()
    params: GenerationParams | None = None  # a generation's resolved parameters


Check = Callable[[Mapping[str, Any], GenerationDefaults, RequestLimits], Checked]


@dataclass(frozen=True)
class RequestKind:
    name: str  # "img2img"
    path: str  # the worker's (and the gateway's) route: "/sdapi/v1/img2img"
    model: type[BaseModel]  # the A1111 body, for the checks and the OpenAPI document
    check: Check
    generation: bool  # seeds to fix before the first attempt, and an `info` JSON in the answer
    uploads: bool = True  # the body carries images (megabytes to walk): checked off the event loop

    @property
    def has_info(self) -> bool:
        """Does a success carry A1111's `info` JSON string (where `info.sdxlpool` goes)?"""
        return self.generation


def checked_model(model: type[BaseModel], body: Mapping[str, Any]) -> Any:
    """`body` as `model`, or a 422 naming the first bad field (as the workers' FastAPI validation)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(".".join(str(part) for part in first["loc"]) or "body", first["msg"]) from None


def _probe(field: str, data: Any, limits: RequestLimits) -> ImageHeader:
    return probe_image(field, data, max_pixels=limits.max_input_pixels)


def _generation(params: GenerationParams) -> Checked:
    return Checked(cost=params.normalised_steps, loras=lora_names(params.prompt),
                   ignored_fields=params.ignored_fields, params=params)


def _txt2img(body: Mapping[str, Any], defaults: GenerationDefaults, limits: RequestLimits) -> Checked:
    return _generation(resolve_request(checked_model(Txt2ImgRequest, body), defaults, limits))


def _img2img(body: Mapping[str, Any], defaults: GenerationDefaults, limits: RequestLimits) -> Checked:
    """Every init image and the mask are probed (header only); the first init image's size is the
    default output size, and a mask must be that size too."""
    request: Img2ImgRequest = checked_model(Img2ImgRequest, body)
    headers = [_probe(f"init_images.{i}", data, limits) for i, data in enumerate(request.init_images or [])]
    if request.mask:
        mask = _probe("mask", request.mask, limits)
        if headers:
            check_mask_size((mask.width, mask.height), (headers[0].width, headers[0].height))
    init_size = (headers[0].width, headers[0].height) if headers else None
    return _generation(resolve_request(request, defaults, limits, init_size=init_size))


def _extras_sizes(request: ExtrasSingleImageRequest | ExtrasBatchImagesRequest, images: list[ImageHeader], limits: RequestLimits,
                  field: str) -> None:
    """The upscaled size of each image must stay within the pixel limit of a generation."""
    for i, header in enumerate(images):
        if request.resize_mode == 1:
            width, height = request.upscaling_resize_w, request.upscaling_resize_h
            name = "upscaling_resize_w"
        else:
            width, height = int(header.width * request.upscaling_resize), int(header.height * request.upscaling_resize)
            name = "upscaling_resize"
        if width * height > limits.max_input_pixels:
            raise InvalidRequest(name, f"makes {field.format(i)} {width}x{height} ({width * height} pixels); "
                                       f"the limit is {limits.max_input_pixels}")


def _extra_single(body: Mapping[str, Any], defaults: GenerationDefaults, limits: RequestLimits) -> Checked:
    request: ExtrasSingleImageRequest = checked_model(ExtrasSingleImageRequest, body)
    header = _probe("image", request.image, limits)
    _extras_sizes(request, [header], limits, "image")
    return Checked(cost=EXTRAS_COST_PER_IMAGE)


def _extra_batch(body: Mapping[str, Any], defaults: GenerationDefaults, limits: RequestLimits) -> Checked:
    request: ExtrasBatchImagesRequest = checked_model(ExtrasBatchImagesRequest, body)
    if not request.imageList:
        raise InvalidRequest("imageList", "needs at least one image")
    headers = [_probe(f"imageList.{i}.data", item.data, limits) for i, item in enumerate(request.imageList)]
    _extras_sizes(request, headers, limits, "imageList.{}.data")
    return Checked(cost=EXTRAS_COST_PER_IMAGE * len(headers))


def _png_info(body: Mapping[str, Any], defaults: GenerationDefaults, limits: RequestLimits) -> Checked:
    request: PngInfoRequest = checked_model(PngInfoRequest, body)
    _probe("image", request.image, limits)
    return Checked(cost=PNG_INFO_COST)


def lora_names(prompt: str) -> frozenset[str]:
    """The LoRAs a prompt calls, for the lora_affinity scorer (a malformed call: none; the worker says why)."""
    try:
        _text, calls = extract_networks(prompt)
    except ValueError:
        return frozenset()
    return frozenset(c.name for c in calls if c.kind in LORA_KINDS)


_PREFIX = "/sdapi/v1/"
TXT2IMG = RequestKind("txt2img", _PREFIX + "txt2img", Txt2ImgRequest, _txt2img, generation=True, uploads=False)
IMG2IMG = RequestKind("img2img", _PREFIX + "img2img", Img2ImgRequest, _img2img, generation=True)
EXTRA_SINGLE_IMAGE = RequestKind("extra-single-image", _PREFIX + "extra-single-image", ExtrasSingleImageRequest,
                                 _extra_single, generation=False)
EXTRA_BATCH_IMAGES = RequestKind("extra-batch-images", _PREFIX + "extra-batch-images", ExtrasBatchImagesRequest,
                                 _extra_batch, generation=False)
PNG_INFO = RequestKind("png-info", _PREFIX + "png-info", PngInfoRequest, _png_info, generation=False)
KINDS: dict[str, RequestKind] = {kind.name: kind for kind in
                                 (TXT2IMG, IMG2IMG, EXTRA_SINGLE_IMAGE, EXTRA_BATCH_IMAGES, PNG_INFO)}


def kind_of_path(path: str) -> RequestKind | None:
    return next((kind for kind in KINDS.values() if kind.path == path), None)
