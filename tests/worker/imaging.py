"""Helpers for looking at the PNGs a worker returns."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def pixels(b64: str) -> np.ndarray:
    return np.asarray(decode(b64).convert("RGB"), dtype=np.int16)
