"""Init images and masks for img2img tests, as clients send them (base64, data URLs)."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def gradient(width: int = 64, height: int = 64) -> Image.Image:
    """A picture with structure everywhere (no flat area), so changes show."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x * y) % 256], axis=-1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def encoded(image: Image.Image, fmt: str = "PNG", **save: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def box_mask(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    """White (repaint) inside `box` = (x1, y1, x2, y2), black elsewhere."""
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, box)
    return mask
