"""The extras routes (`extra-single-image`, `extra-batch-images`) and `png-info`, as A1111 does them.

A1111 (1.9/1.10 `modules/postprocessing.py`, `scripts/postprocessing_upscale.py`,
`modules/images.py`, read for their behaviour):

* upscale: `resize_mode` 0 scales by `upscaling_resize`; 1 scales by the larger of the two ratios to
  `upscaling_resize_w` x `upscaling_resize_h`, then with `upscaling_crop` pastes the result centred
  on a black canvas of exactly that size (a crop when it is larger). `upscaler_1` "None" leaves the
  image as it is; `upscaler_2` is blended over it with `extras_upscaler_2_visibility`;
* the input is converted to RGB; the output PNG keeps the input's text chunks (its `parameters`
  infotext too) and adds a `postprocessing` one ("Postprocess upscale by: 2, Postprocess upscaler:
  Lanczos"), which is also `html_info` (`<p>...</p>`);
* GFPGAN / CodeFormer: this worker has no face-restoration weights, so a visibility above 0 is
  listed as not applied (`Not applied: ...` in html_info), or refused (422) in strict mode.

`plan_extras` checks a request against the worker's upscalers (a 422 naming `upscaler_1` or
`upscaler_2`); `run_extras` is the work itself (PIL, or a model upscaler through `run_model`).
`png_info` reads an image's infotext and other text back, as A1111's `read_info_from_image`.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Any

from sdxlpool.api.a1111 import ExtrasSingleImageRequest
from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.infotext import parse_infotext, quote
from sdxlpool.worker.upscalers import ModelRunner, UpscalerEntry, find_upscaler, upscale_by

__all__ = ["ExtrasPlan", "plan_extras", "output_size", "run_extras", "postprocess_text", "html_info", "extras_png",
           "png_info"]

# PIL info keys that are not text an image carries (A1111's IGNORED_INFO_KEYS).
_IGNORED_INFO_KEYS = frozenset({"jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "exif", "loop",
                                "background", "timestamp", "duration", "progressive", "progression",
                                "icc_profile", "chromaticity", "photoshop"})
_USER_COMMENT = 0x9286  # EXIF UserComment, where A1111 writes a JPEG's or WebP's infotext
_EXIF_IFD = 0x8769


@dataclass(frozen=True)
class ExtrasPlan:
    """An extras request, checked: what to do to each image."""

    upscaler_1: UpscalerEntry | None  # None: "None", no upscaling at all
    upscaler_2: UpscalerEntry | None
    visibility_2: float
    resize_mode: int
    scale: float
    width: int
    height: int
    crop: bool
    ignored: tuple[str, ...]  # what the request asked for that is not applied (face restoration)

    @property
    def uses_model(self) -> bool:
        """Whether a model upscaler runs (on the job thread: it may use the GPU)."""
        return any(u is not None and u.kind == "model" for u in (self.upscaler_1, self.upscaler_2))


def plan_extras(request: ExtrasSingleImageRequest | Any, entries: list[UpscalerEntry]) -> ExtrasPlan:
    """The request's upscalers found among `entries` (exact A1111 names; a 422 naming the field)."""
    first = None if request.upscaler_1 == "None" else find_upscaler(entries, request.upscaler_1, field="upscaler_1")
    second = None if request.upscaler_2 == "None" else find_upscaler(entries, request.upscaler_2, field="upscaler_2")
    ignored = tuple(f"{name}: {getattr(request, name):g} (no face restorer weights on this worker)"
                    for name in ("gfpgan_visibility", "codeformer_visibility") if getattr(request, name) > 0)
    return ExtrasPlan(
        upscaler_1=first, upscaler_2=second, visibility_2=request.extras_upscaler_2_visibility,
        resize_mode=request.resize_mode, scale=request.upscaling_resize, width=request.upscaling_resize_w,
        height=request.upscaling_resize_h, crop=request.upscaling_crop, ignored=ignored,
    )


def output_size(plan: ExtrasPlan, width: int, height: int, *, max_pixels: int) -> tuple[int, int]:
    """The size `run_extras` gives a `width` x `height` image; a 422 when it is empty or over
    `max_pixels` (naming upscaling_resize, or upscaling_resize_w for resize_mode 1)."""
    if plan.upscaler_1 is None:
        return width, height
    field = "upscaling_resize_w" if plan.resize_mode == 1 else "upscaling_resize"
    if plan.resize_mode == 1 and plan.crop:
        out_w, out_h = plan.width, plan.height
    else:
        scale = max(plan.width / width, plan.height / height) if plan.resize_mode == 1 else plan.scale
        out_w, out_h = int(width * scale // 8 * 8), int(height * scale // 8 * 8)
    if out_w < 8 or out_h < 8:
        raise InvalidRequest(field, f"makes a {width}x{height} image {out_w}x{out_h}; at least 8x8 is needed")
    if out_w * out_h > max_pixels:
        raise InvalidRequest(field, f"makes a {width}x{height} image {out_w}x{out_h}, over the limit of "
                                    f"{max_pixels} pixels")
    return out_w, out_h


def run_extras(plan: ExtrasPlan, image: Any, run_model: ModelRunner | None = None) -> tuple[Any, dict[str, Any]]:
    """One image through the plan: (the result, A1111's postprocessing info in order)."""
    from PIL import Image

    image = image.convert("RGB")
    info: dict[str, Any] = {}
    if plan.upscaler_1 is None:
        return image, info
    upscaled = _upscale(plan, plan.upscaler_1, image, info, run_model)
    info["Postprocess upscaler"] = plan.upscaler_1.name
    if plan.upscaler_2 is not None and plan.visibility_2 > 0:
        second = _upscale(plan, plan.upscaler_2, image, info, run_model)
        if second.mode != upscaled.mode:
            second = second.convert(upscaled.mode)
        if second.size != upscaled.size:  # both come from one plan: the same size
            second = second.resize(upscaled.size, resample=Image.Resampling.LANCZOS)
        upscaled = Image.blend(upscaled, second, plan.visibility_2)
        info["Postprocess upscaler 2"] = plan.upscaler_2.name
    return upscaled, info


def _upscale(plan: ExtrasPlan, entry: UpscalerEntry, image: Any, info: dict[str, Any],
             run_model: ModelRunner | None) -> Any:
    from PIL import Image

    if plan.resize_mode == 1:
        scale = max(plan.width / image.width, plan.height / image.height)
        info["Postprocess upscale to"] = f"{plan.width}x{plan.height}"
    else:
        scale = plan.scale
        info["Postprocess upscale by"] = f"{plan.scale:g}"
    result = upscale_by(entry, image, scale, run_model)
    if plan.resize_mode == 1 and plan.crop:
        canvas = Image.new("RGB", (plan.width, plan.height))
        canvas.paste(result, box=(plan.width // 2 - result.width // 2, plan.height // 2 - result.height // 2))
        result = canvas
        info["Postprocess crop to"] = f"{result.width}x{result.height}"
    return result


def postprocess_text(info: dict[str, Any]) -> str:
    """A1111's postprocessing infotext: "Key: value, ..." (a key alone when its value is itself)."""
    return ", ".join(key if key == value else f"{key}: {quote(value)}" for key, value in info.items()
                     if value is not None)


def html_info(text: str, ignored: tuple[str, ...] = ()) -> str:
    """A1111's html_info: the text's lines escaped, joined by <br>, in one <p>; plus a line naming
    what was not applied."""
    lines = [*text.split("\n"), *([f"Not applied: {'; '.join(ignored)}"] if ignored else [])]
    return "<p>" + "<br>\n".join(html.escape(line) for line in lines) + "</p>"


def extras_png(image: Any, source_info: dict[str, Any], postprocessing: str) -> str:
    """base64 PNG of an extras result: the input's text chunks kept, `postprocessing` added."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    for key, value in source_info.items():
        if isinstance(key, str) and isinstance(value, str) and key != "postprocessing":
            meta.add_text(key, value)
    if postprocessing:
        meta.add_text("postprocessing", postprocessing)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta, compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def png_info(image: Any) -> dict[str, Any]:
    """/sdapi/v1/png-info's answer for a decoded image: the infotext (`parameters` text, or the EXIF
    UserComment A1111 writes in JPEG and WebP, or a GIF's comment), the other text as `items`, and
    the infotext parsed (`parse_infotext`)."""
    items = dict(image.info or {})
    text = items.pop("parameters", None)
    if "exif" in items:
        comment = _exif_user_comment(image)
        text = comment if comment else text
    elif "comment" in items:
        comment = items.pop("comment")
        text = comment.decode("utf-8", errors="ignore") if isinstance(comment, bytes) else str(comment)
    for key in _IGNORED_INFO_KEYS:
        items.pop(key, None)
    text = text if isinstance(text, str) else ""
    return {"info": text, "items": {k: _json_safe(v) for k, v in items.items() if _json_safe(v) is not None},
            "parameters": parse_infotext(text) if text else {}}


def _exif_user_comment(image: Any) -> str | None:
    try:
        raw = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    except Exception:  # noqa: BLE001 - a broken EXIF block carries no infotext
        return None
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    head, body = raw[:8], raw[8:]
    if head == b"UNICODE\x00":
        # A1111 (piexif) writes UTF-16 big-endian; some writers use little-endian with a BOM.
        if body[:2] == b"\xff\xfe":
            return body[2:].decode("utf-16-le", errors="ignore").rstrip("\x00")
        return body.decode("utf-16-be", errors="ignore").rstrip("\x00")
    return body.decode("utf-8" if head.startswith(b"ASCII") else "latin-1", errors="ignore").rstrip("\x00")


def _json_safe(value: Any) -> Any:
    """A PIL info value as JSON (text, numbers, lists of them); None for what is not (bytes)."""
    if isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, tuple | list):
        items = [_json_safe(v) for v in value]
        return items if all(v is not None for v in items) else None
    if isinstance(value, bytes):
        return None
    try:
        return float(value)  # PIL's IFDRational and other numbers
    except (TypeError, ValueError):
        return None

