"""`sdxlpool._images`: the checks every uploaded image gets, on the gateway (header only) and the worker."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from sdxlpool._images import _PROBE_CHARS, decode_image, probe_image
from sdxlpool.errors import InvalidRequest

LIMIT = 6144 * 6144


def encoded(image: Image.Image, fmt: str, **options: object) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return base64.b64encode(buffer.getvalue()).decode()


def noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_claiming(width: int, height: int, padding: int) -> str:
    """A PNG whose header claims width x height, followed by `padding` bytes of a text chunk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"tEXt", b"pad\x00" + b"x" * padding) + chunk(b"IEND", b""))
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_large_upload_is_probed_from_its_start_and_agrees_with_the_whole_decode(fmt: str) -> None:
    data = encoded(noise(640, 480), fmt, **({"quality": 95} if fmt != "PNG" else {}))
    assert len(data) > 2 * _PROBE_CHARS  # the prefix path, not the small-image one
    header = probe_image("init_images.0", data, max_pixels=LIMIT)
    assert (header.width, header.height, header.format) == (640, 480, fmt)
    assert decode_image("init_images.0", data, max_pixels=LIMIT).size == (640, 480)
    assert probe_image("x", f"data:image/{fmt.lower()};base64,{data}", max_pixels=LIMIT).width == 640


def test_a_jpeg_whose_size_is_past_the_prefix_is_read_whole() -> None:
    """A big EXIF block puts the JPEG's size marker beyond the decoded prefix: the whole file answers."""
    image = noise(96, 64)
    exif = Image.Exif()
    exif[0x9286] = "x" * 60_000  # UserComment: one APP1 marker (at most 64 KiB), past the 48 KiB prefix
    data = encoded(image, "JPEG", exif=exif.tobytes())
    assert probe_image("mask", data, max_pixels=LIMIT).width == 96


@pytest.mark.parametrize(("data", "message"), [
    (base64.b64encode(b"not an image " * 20_000).decode(), "is not an image"),
    (png_claiming(60_000, 60_000, 200_000), "over the limit of"),  # PIL's bomb guard: no size in the message
    (png_claiming(7000, 7000, 200_000), "7000x7000"),
    ("A" * 300_000 + "!!!", "is not an image"),  # base64 read leniently, as A1111 does
])
def test_a_large_bad_upload_is_refused_naming_the_field(data: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        probe_image("init_images.1", data, max_pixels=LIMIT)
    assert caught.value.field == "init_images.1" and message in str(caught.value), str(caught.value)
