"""img2img and inpainting inputs prepared as A1111 prepares them (pure: PIL and numpy, no torch).

What A1111's `StableDiffusionProcessingImg2Img.init` does before any latent exists, written from its
documented behaviour (AUTOMATIC1111 1.10, `modules/processing.py`, `images.resize_image`,
`masking`):

* the init images lose their alpha over white (`img2img_background_color`) and are resized to the
  job's size by `resize_mode`: 0 just resize (Lanczos), 1 crop and resize (cover, centre crop),
  2 resize and fill (fit, the bands filled by stretching the edge rows/columns), 3 "just resize
  (latent upscale)": the image is encoded at its own size and the latents are resized (the caller);
* the mask: an RGBA mask with transparency is read from its alpha (thresholded at 128 when
  `mask_round`), anything else converted to L; inverted with `inpainting_mask_invert`; blurred by
  a Gaussian of sigma `mask_blur_x` along x, then `mask_blur_y` along y (kernel 2*int(2.5*sigma+0.5)+1,
  borders reflected as OpenCV's default);
* "only masked" (`inpaint_full_res`): the mask's bounding box grown by `inpaint_full_res_padding`,
  then to the job's aspect, is cut out of the image and processed at width x height; the result
  is pasted back (crop-and-resized to the box) into the init image at its own size. A blank mask
  turns the job into plain img2img, as in A1111;
* "whole picture": the mask is resized like the images; the overlay mask is the blurred mask x 2;
* `inpainting_fill` 0 (fill): the masked area is painted with blurred colours of its surroundings
  before encoding (A1111 does this for fills 0, 2 and 3; 2 and 3 then replace the latents there);
* the overlay: the init image with alpha 255 - overlay mask, composited over every result, so
  pixels outside the blurred mask are the init image's exactly.

The latent mask (`Img2ImgInputs.latent_mask`) is the processing mask at 1/8 size (bicubic),
rounded to 0/1 when `mask_round`: 1 is denoised, 0 keeps the init latents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from sdxlpool.api.generation import Img2ImgParams

__all__ = [
    "Img2ImgInputs", "prepare_inputs", "apply_overlay", "resize_image", "binary_mask", "blur_mask",
    "crop_region", "expand_crop_region", "fill_masked", "flatten", "LATENT_FACTOR", "MASKED_CONTENT",
]

LATENT_FACTOR = 8  # SDXL's VAE: one latent per 8x8 pixels
BACKGROUND = (255, 255, 255)  # A1111's img2img_background_color default
# inpainting_fill -> A1111's "Masked content" infotext value (it writes none for 1, "original").
MASKED_CONTENT = {0: "fill", 1: None, 2: "latent noise", 3: "latent nothing"}
# (Gaussian radius, times composited) of A1111's fill, widest first: far colours first, near ones over them.
_FILL_LAYERS = ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1))


@dataclass(frozen=True)
class Img2ImgInputs:
    """An img2img job's pixel-space inputs, ready for the VAE."""

    images: tuple[Any, ...]  # RGB, one per init image: what is encoded
    latent_upscale: bool = False  # resize_mode 3: the latents are resized to the job's size, not the pixels
    mask: Any = None  # L at the job's size, 255 = repaint; None: plain img2img
    latent_mask: Any = None  # float32 (h/8, w/8), 1 = repaint; None without a mask
    overlays: tuple[Any, ...] = ()  # RGBA per init image: the init pixels kept over the result
    paste_to: tuple[int, int, int, int] | None = None  # "only masked": (x, y, w, h) in the init image
    generation_params: dict[str, Any] = field(default_factory=dict)  # A1111's extra_generation_params

    def image_for(self, index: int) -> Any:
        """The init image of image `index` of a batch (A1111 cycles the init images over it)."""
        return self.images[index % len(self.images)]


def flatten(image: Any) -> Any:
    """RGB; transparency composited over A1111's white background."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return image.convert("RGB")


def resize_image(mode: int, image: Any, width: int, height: int) -> Any:
    """A1111's resize modes 0 (just resize), 1 (crop and resize), 2 (resize and fill); Lanczos.
    Mode 3 resizes in latent space, so in pixels it is mode 0 here."""
    if mode in (0, 3):
        return image.resize((width, height), Image.Resampling.LANCZOS)
    target_ratio, source_ratio = width / height, image.width / image.height
    cover = mode == 1
    # Cover (1): the side that is relatively shorter fills the target; fit (2): the longer one.
    full_width = target_ratio > source_ratio if cover else target_ratio < source_ratio
    if full_width:
        size = (width, image.height * width // image.width)
    else:
        size = (image.width * height // image.height, height)
    resized = image.resize(size, Image.Resampling.LANCZOS) if size != image.size else image.copy()
    canvas = Image.new(image.mode if image.mode in ("L", "RGB") else "RGB", (width, height))
    left, top = width // 2 - size[0] // 2, height // 2 - size[1] // 2
    canvas.paste(resized, (left, top))
    if cover:
        return canvas
    if full_width and top > 0:  # bands above and below: the first and last rows stretched
        canvas.paste(resized.crop((0, 0, size[0], 1)).resize((width, top), Image.Resampling.NEAREST), (0, 0))
        last = resized.crop((0, size[1] - 1, size[0], size[1]))
        canvas.paste(last.resize((width, top), Image.Resampling.NEAREST), (0, top + size[1]))
    elif not full_width and left > 0:  # bands left and right: the first and last columns
        canvas.paste(resized.crop((0, 0, 1, size[1])).resize((left, height), Image.Resampling.NEAREST), (0, 0))
        last = resized.crop((size[0] - 1, 0, size[0], size[1]))
        canvas.paste(last.resize((left, height), Image.Resampling.NEAREST), (left + size[0], 0))
    return canvas


def binary_mask(mask: Any, *, round_: bool = True) -> Any:
    """The mask as L: an RGBA mask with some transparency is its alpha (>128 -> 255 when rounding)."""
    if mask.mode == "RGBA" and mask.getextrema()[-1] != (255, 255):
        alpha = mask.getchannel("A")
        return alpha.point(lambda v: 255 if v > 128 else 0) if round_ else alpha
    return mask.convert("L")


def _gaussian_kernel(sigma: float) -> np.ndarray:
    size = 2 * int(2.5 * sigma + 0.5) + 1
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2 * sigma * sigma))
    return kernel / kernel.sum()


def _blur_axis(values: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """One 1-D Gaussian pass over uint8 `values`, borders reflected without repeating the edge."""
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    pad = [(0, 0), (0, 0)]
    pad[axis] = (radius, radius)
    padded = np.pad(values.astype(np.float64), pad, mode="reflect")
    length = values.shape[axis]
    out = np.zeros(values.shape, dtype=np.float64)
    for offset, weight in enumerate(kernel):
        window = padded[offset:offset + length, :] if axis == 0 else padded[:, offset:offset + length]
        out += weight * window
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blur_mask(mask: Any, blur_x: int, blur_y: int) -> Any:
    """A1111's mask blur: a Gaussian along x (sigma blur_x), then along y (sigma blur_y); 0 = none."""
    values = np.asarray(mask.convert("L"))
    if blur_x > 0:
        values = _blur_axis(values, blur_x, axis=1)
    if blur_y > 0:
        values = _blur_axis(values, blur_y, axis=0)
    return Image.fromarray(values, mode="L")


def crop_region(mask: Any, padding: int) -> tuple[int, int, int, int] | None:
    """The box (x1, y1, x2, y2) around the mask's non-zero pixels grown by `padding` (clipped to the
    image); None for a blank mask."""
    box = mask.getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_crop_region(
    box: tuple[int, int, int, int], width: int, height: int, image_width: int, image_height: int,
) -> tuple[int, int, int, int]:
    """`box` grown along one axis, around its centre, to the aspect of width x height; shifted back
    inside the image where it would leave it (and clipped if the image is too small)."""
    x1, y1, x2, y2 = box
    if (x2 - x1) / (y2 - y1) > width / height:
        y1, y2 = _grow((x2 - x1) / (width / height), y1, y2, image_height)
    else:
        x1, x2 = _grow((y2 - y1) * (width / height), x1, x2, image_width)
    return x1, y1, x2, y2


def _grow(desired: float, low: int, high: int, limit: int) -> tuple[int, int]:
    extra = int(desired - (high - low))
    low -= extra // 2
    high += extra - extra // 2
    if high >= limit:  # past the far edge: shift back
        low -= high - limit
        high = limit
    if low < 0:  # past the near edge: shift forward
        high -= low
        low = 0
    return low, min(high, limit)


def fill_masked(image: Any, mask: Any) -> Any:
    """A1111's "fill": the masked area painted with ever less blurred colours of the unmasked rest."""
    keep = ImageOps.invert(mask.convert("L"))
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=keep)  # premultiplied: blurring ignores the hole
    painted = Image.new("RGBA", image.size)
    for radius, times in _FILL_LAYERS:
        layer = kept.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(times):
            painted.alpha_composite(layer)
    return painted.convert("RGB")


def _overlay(image: Any, overlay_mask: Any) -> Any:
    """The init image where it is kept: alpha 255 - overlay mask (premultiplied while pasting)."""
    kept = Image.new("RGBa", image.size)
    kept.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(overlay_mask.convert("L")))
    return kept.convert("RGBA")


def _latent_mask(mask: Any, width: int, height: int, round_: bool) -> np.ndarray:
    small = mask.resize((width // LATENT_FACTOR, height // LATENT_FACTOR), Image.Resampling.BICUBIC)
    values = np.asarray(small, dtype=np.float32) / 255.0
    return np.around(values) if round_ else values


def prepare_inputs(
    images: Sequence[Any], mask: Any, params: Img2ImgParams, width: int, height: int,
) -> Img2ImgInputs:
    """The init images (and mask) of a job of width x height, as A1111 prepares them."""
    extra: dict[str, Any] = {"Denoising strength": params.denoising_strength}
    resize_mode = params.resize_mode
    if mask is None:
        if resize_mode == 3:
            return Img2ImgInputs(tuple(flatten(im) for im in images), latent_upscale=True, generation_params=extra)
        return Img2ImgInputs(tuple(resize_image(resize_mode, flatten(im), width, height) for im in images),
                             generation_params=extra)

    mask = binary_mask(mask, round_=params.mask_round)
    if params.inpainting_mask_invert:
        mask = ImageOps.invert(mask)
        extra["Mask mode"] = "Inpaint not masked"
    mask = blur_mask(mask, params.mask_blur_x, params.mask_blur_y)
    if params.mask_blur_x > 0 or params.mask_blur_y > 0:
        # A1111 writes mask_blur, which is None (left out) when x and y differ.
        extra["Mask blur"] = params.mask_blur_x if params.mask_blur_x == params.mask_blur_y else None

    # With a mask, every init image is taken at the mask's size (the service checks the first's).
    sources = [flatten(im) if im.size == mask.size else resize_image(0, flatten(im), *mask.size) for im in images]
    pixel_mode = 0 if resize_mode == 3 else resize_mode  # A1111 fails on mode 3 with a mask; here it is 0
    box = crop_region(mask, params.inpaint_full_res_padding) if params.inpaint_full_res else None
    if params.inpaint_full_res and box is None:  # a blank mask: A1111 falls back to plain img2img
        return Img2ImgInputs(tuple(resize_image(pixel_mode, im, width, height) for im in sources),
                             generation_params=extra)

    prepared, overlays = [], []
    paste_to = None
    if box is not None:
        x1, y1, x2, y2 = expand_crop_region(box, width, height, mask.width, mask.height)
        job_mask = resize_image(2, mask.crop((x1, y1, x2, y2)), width, height).convert("L")
        overlay_mask = mask
        paste_to = (x1, y1, x2 - x1, y2 - y1)
        extra["Inpaint area"] = "Only masked"
        extra["Masked area padding"] = params.inpaint_full_res_padding
        for source in sources:
            overlays.append(_overlay(source, overlay_mask))
            prepared.append(resize_image(2, source.crop((x1, y1, x2, y2)), width, height))
    else:
        job_mask = resize_image(pixel_mode, mask, width, height).convert("L")
        doubled = np.clip(np.asarray(job_mask, dtype=np.float32) * 2, 0, 255).astype(np.uint8)
        overlay_mask = Image.fromarray(doubled, mode="L")
        for source in sources:
            resized = resize_image(pixel_mode, source, width, height)
            overlays.append(_overlay(resized, overlay_mask))
            prepared.append(resized)
    if params.inpainting_fill != 1:
        prepared = [fill_masked(image, job_mask) for image in prepared]
    content = MASKED_CONTENT[params.inpainting_fill]
    if content is not None:
        extra["Masked content"] = content
    return Img2ImgInputs(
        images=tuple(prepared), mask=job_mask, latent_mask=_latent_mask(job_mask, width, height, params.mask_round),
        overlays=tuple(overlays), paste_to=paste_to, generation_params=extra,
    )


def apply_overlay(image: Any, inputs: Img2ImgInputs, index: int) -> Any:
    """A result (RGB, the job's size) with the init image's kept pixels over it; "only masked"
    results are first pasted back into the init image's frame."""
    if not inputs.overlays:
        return image
    overlay = inputs.overlays[index % len(inputs.overlays)]
    if inputs.paste_to is not None:
        x, y, w, h = inputs.paste_to
        canvas = Image.new("RGBA", overlay.size)
        canvas.paste(resize_image(1, image, w, h), (x, y))
        image = canvas
    composed = image.convert("RGBA")
    composed.alpha_composite(overlay)
    return composed.convert("RGB")
