"""`DIR/styles.csv`: a few A1111 prompt styles, in the file format A1111 writes (header, quoting)."""

from __future__ import annotations

import csv
from pathlib import Path

__all__ = ["write_tiny_styles", "TINY_STYLES"]

# (name, prompt, negative_prompt): one appended, one with the {prompt} placeholder, one negative only.
TINY_STYLES = (
    ("photo", "photograph, 35mm, sharp focus", "drawing, painting"),
    ("cinematic", "cinematic still of {prompt}, film grain", ""),
    ("clean", "", "lowres, blurry, watermark"),
)


def write_tiny_styles(target: Path) -> Path:
    """Write `target/styles.csv`; returns its path."""
    path = target / "styles.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as handle:  # A1111 writes a BOM and CRLF rows
        writer = csv.writer(handle)
        writer.writerow(["name", "prompt", "negative_prompt"])
        writer.writerows(TINY_STYLES)
    return path
