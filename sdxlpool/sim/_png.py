"""Solid-colour PNGs written by hand: valid, any size, in microseconds, without PIL.

A simulated image is one colour, so it is stored as a one-entry palette at 1 bit per pixel: the
pixel data (all zeros) depends only on the size and is compressed once per size. The colour goes in
the PLTE chunk, the A1111 infotext in a `tEXt` chunk under `parameters` (`iTXt` when it is not
latin-1, as PIL writes it), and benchmarks that need realistic response sizes get a private
ancillary `spAd` chunk of zeros after the pixels, which every decoder skips.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

__all__ = ["solid_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHUNK_OVERHEAD = 12  # length, type and CRC around a chunk's data
_PADDING_TYPE = b"spAd"  # ancillary (s), private (p), reserved bit clear (A), safe to copy (d)


def solid_png(width: int, height: int, rgb: tuple[int, int, int], text: dict[str, str], min_bytes: int = 0) -> bytes:
    """A width x height PNG of one colour with `text` chunks, padded to at least `min_bytes`."""
    head = b"".join((
        _SIGNATURE,
        _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 3, 0, 0, 0)),  # 1-bit, indexed
        _chunk(b"PLTE", bytes(rgb)),
        *(_text_chunk(key, value) for key, value in text.items()),
        _pixels(width, height),
    ))
    tail = _chunk(b"IEND", b"")
    missing = min_bytes - len(head) - len(tail)
    if missing <= 0:
        return head + tail
    return head + _padding(max(0, missing - _CHUNK_OVERHEAD)) + tail


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _text_chunk(key: str, value: str) -> bytes:
    try:
        return _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
    except UnicodeEncodeError:  # keyword, no compression, no language, no translated keyword
        return _chunk(b"iTXt", key.encode("latin-1") + b"\0\0\0\0\0" + value.encode("utf-8"))


@lru_cache(maxsize=32)
def _pixels(width: int, height: int) -> bytes:
    """IDAT of an all-index-0 image: each row is filter byte 0 and ceil(width / 8) zero bytes."""
    return _chunk(b"IDAT", zlib.compress(bytes((1 + (width + 7) // 8) * height), 9))


@lru_cache(maxsize=8)
def _padding(size: int) -> bytes:
    return _chunk(_PADDING_TYPE, bytes(size))
