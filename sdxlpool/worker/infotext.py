"""A1111 infotexts ("parameters" text) and PNG encoding with the infotext in a tEXt chunk.

Infotexts are how A1111 users share and re-run images: the PNG Info tab and every A1111 client
parse this exact layout, so keys and order follow A1111's `create_infotext`.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["format_infotext", "encode_png"]


def format_infotext(prompt: str, negative_prompt: str, fields: Mapping[str, Any]) -> str:
    """`prompt\\nNegative prompt: ...\\nSteps: 25, Sampler: ..., ...`; None values are left out."""
    parameters = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{parameters}"


def _quote(value: Any) -> str:
    # A1111 quotes a value that would break the comma/colon layout (infotext_utils.quote).
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def encode_png(image: Any, infotext: str) -> str:
    """base64 PNG of a PIL image with the infotext under the `parameters` key, as A1111 writes it."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta, compress_level=1)  # speed over a few % of size
    return base64.b64encode(buffer.getvalue()).decode("ascii")
