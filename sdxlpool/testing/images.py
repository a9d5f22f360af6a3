"""How far apart two images are: what the benchmarks report when two paths should draw the same picture."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["compare_images"]


def compare_images(reference: Image.Image, other: Image.Image) -> dict[str, Any]:
    """PSNR in dB (None: identical pixels) and the largest difference in 0-255 levels between two images."""
    a = np.asarray(reference.convert("RGB"), dtype=np.float64)
    b = np.asarray(other.convert("RGB"), dtype=np.float64)
    if a.shape != b.shape:
        return {"psnr_db": 0.0, "max_abs_difference": None, "sizes": [reference.size, other.size]}
    mse = float(np.mean((a - b) ** 2))
    psnr = None if mse == 0 else round(10 * math.log10(255**2 / mse), 2)
    return {"psnr_db": psnr, "max_abs_difference": float(np.abs(a - b).max())}
