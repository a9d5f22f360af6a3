"""Images sent by clients (img2img init images, masks, extras, png-info): base64 in, checked PIL out.

A1111 clients send images as base64, with or without a `data:image/png;base64,` prefix. Each is
checked before any work is queued, and a bad one is a 422 naming the field: not base64, not an
image, truncated, 0x0, or dimensions over the limit (which also keeps a small file that claims to be
a huge image, a decompression bomb, from taking the worker's memory).

* `probe_image` reads only the header (size and format): cheap enough for the gateway to check
  every request before routing it.
* `decode_image` decodes the whole image, as the worker needs it.

PIL only (no torch): the gateway and the worker both import it.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from dataclasses import dataclass
from typing import Any

from sdxlpool.errors import InvalidRequest

__all__ = ["ImageHeader", "probe_image", "decode_image", "image_bytes", "check_mask_size"]

_DATA_URL_PREFIX = "data:"


@dataclass(frozen=True)
class ImageHeader:
    width: int
    height: int
    format: str  # PIL's name: PNG, JPEG, WEBP, ...


def image_bytes(field: str, data: Any) -> bytes:
    """The bytes of a base64 image string (a data URL's payload too)."""
    if not isinstance(data, str) or not data.strip():
        raise InvalidRequest(field, "must be a base64-encoded image (PNG, JPEG or WebP)")
    text = data.strip()
    if text.startswith(_DATA_URL_PREFIX):
        header, _, text = text.partition(",")
        if ";base64" not in header:
            raise InvalidRequest(field, "is a data URL without ;base64")
    try:
        return base64.b64decode(text, validate=False)
    except (binascii.Error, ValueError):
        raise InvalidRequest(field, "is not valid base64") from None


def probe_image(field: str, data: Any, *, max_pixels: int) -> ImageHeader:
    """Check that `data` is an image within `max_pixels`, from its header only.

    Only the start of the base64 text is decoded when the header is there (PNG and WebP put the
    size in their first bytes, most JPEGs within their first kilobytes): the gateway probes every
    upload of every request, and decoding all of a 10 MB image only to read its size would cost
    more than the rest of forwarding it. Anything the prefix cannot answer is decoded whole."""
    header = _prefix_header(data, max_pixels)
    if header is not None:
        return header
    image = _open(field, image_bytes(field, data), max_pixels)
    return ImageHeader(image.width, image.height, str(image.format))


_PROBE_CHARS = 64 * 1024  # base64 characters decoded first: 48 KiB of the file


def _prefix_header(data: Any, max_pixels: int) -> ImageHeader | None:
    """The header read from the start of the base64 text alone; None when that cannot decide
    (too short, not base64, not an image, or over the limit: the whole decode says why)."""
    if not isinstance(data, str) or len(data) <= 2 * _PROBE_CHARS:
        return None  # small enough to decode whole
    text = data.lstrip()
    if text.startswith(_DATA_URL_PREFIX):
        text = text.partition(",")[2]
    prefix = text[:_PROBE_CHARS]
    try:
        raw = base64.b64decode(prefix, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        image = _open("", raw, max_pixels)
    except InvalidRequest:
        return None
    return ImageHeader(image.width, image.height, str(image.format))


def decode_image(field: str, data: Any, *, max_pixels: int) -> Any:
    """The whole image as a PIL image (its own mode; the caller converts)."""
    image = _open(field, image_bytes(field, data), max_pixels)
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's "image file is truncated", broken chunks
        raise InvalidRequest(field, f"could not be decoded: {exc}") from None
    return image


def check_mask_size(mask: tuple[int, int], init: tuple[int, int]) -> None:
    """An inpainting mask is painted over the first init image, so it must be that image's size (A1111
    resizes a mask of another size; here it is a 422 naming `mask`, on the gateway and the worker)."""
    if mask != init:
        raise InvalidRequest("mask", f"is {mask[0]}x{mask[1]}; it must be the size of init_images.0 "
                                     f"({init[0]}x{init[1]})")


def _open(field: str, raw: bytes, max_pixels: int) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise InvalidRequest(field, "is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        size = re.search(r"\((\d+) pixels\)", str(exc))
        claimed = f" ({size.group(1)} pixels)" if size else ""
        raise InvalidRequest(field, f"declares a size{claimed} over the limit of {max_pixels} pixels") from None
    except UnidentifiedImageError:
        raise InvalidRequest(field, "is not an image PIL can read (PNG, JPEG or WebP)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequest(field, f"could not be read as an image: {exc}") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidRequest(field, f"is {width}x{height}: an image needs at least one pixel")
    if width * height > max_pixels:
        raise InvalidRequest(field, f"is {width}x{height} ({width * height} pixels); the limit is {max_pixels}")
    return image
