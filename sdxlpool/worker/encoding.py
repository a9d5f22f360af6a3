"""PNG encoding of the worker's images, fast and off the job thread.

At about 1 s of GPU time per 1024x1024 image, Pillow's PNG encoder (adaptive per-row filters, then
zlib level 1: ~0.13 s for an incompressible image, ~0.13 s for a photo-like one) would be most of
the API overhead. `png_bytes` writes the same PNG, pixel for pixel and with the same `parameters`
text chunk, in a few tens of milliseconds:

* every row gets PNG's "Up" filter (row minus the row above, one vectorised numpy subtraction)
  instead of Pillow's per-row choice among five filters;
* the filtered rows are deflated Huffman-only (`Z_HUFFMAN_ONLY`: no string matching; on filtered
  photographic rows it compresses as well as zlib level 1 and 2-4x faster), in horizontal strips
  on a few threads (zlib releases the GIL) joined into one zlib stream the way pigz does it: every
  strip but the last ends with a sync flush, and Huffman-only blocks never refer back to an
  earlier strip, so the strips decode as one stream;
* the infotext chunk is written as Pillow's `PngInfo.add_text` writes it: `tEXt` when the text is
  Latin-1, else an uncompressed `iTXt` in UTF-8.

Images Pillow would write differently are left to Pillow (`encode_png_pil`, the former path): any
mode but 8-bit L / RGB / RGBA, or an image whose `info` carries something Pillow copies into the
file (an ICC profile of an uploaded image that img2img passed through, ...).

`ImageEncoder` runs the encodings on its own threads, so the job thread hands its images over and
starts the next job at once; each request waits for its own images only, and an encoding that fails
fails its request alone (`ImageEncodingFailed`, HTTP 500 JSON).
"""

from __future__ import annotations

import base64
import io
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sdxlpool.errors import RequestError

__all__ = ["EncodedImages", "ImageEncoder", "ImageEncodingFailed", "encode_png_pil", "png_base64", "png_bytes"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOUR_TYPES = {"L": (0, 1), "RGB": (2, 3), "RGBA": (6, 4)}  # mode: (PNG colour type, bytes per pixel)
_STRIP_BYTES = 1 << 20  # about 1 MiB of filtered rows per strip: 3 strips for 1024x1024 RGB
_KEY = "parameters"  # A1111's infotext key


class ImageEncodingFailed(RequestError):
    """A made image could not be encoded as PNG: that request alone fails with a 500 JSON."""

    status = 500
    code = "encoding_failed"


def encode_png_pil(image: Any, infotext: str) -> bytes:
    """The former path, kept for images `png_bytes` does not write itself: Pillow, compress level 1."""
    from PIL.PngImagePlugin import PngInfo

    meta = PngInfo()
    meta.add_text(_KEY, infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta, compress_level=1)
    return buffer.getvalue()


def png_base64(image: Any, infotext: str) -> str:
    """base64 PNG of a PIL image with the infotext under the `parameters` key, as A1111 writes it."""
    return base64.b64encode(png_bytes(image, infotext)).decode("ascii")


def png_bytes(image: Any, infotext: str, *, strips: Callable[[list[bytes]], list[bytes]] | None = None) -> bytes:
    """The PNG file of a PIL image with its infotext (see the module doc for how). `strips`
    deflates a list of filtered strips (default: on this module's shared threads)."""
    kind = _COLOUR_TYPES.get(image.mode)
    if kind is None or image.info:
        return encode_png_pil(image, infotext)
    import numpy as np

    colour_type, channels = kind
    width, height = image.size
    pixels = np.asarray(image, dtype=np.uint8).reshape(height, width * channels)
    rows = np.empty((height, 1 + width * channels), dtype=np.uint8)
    rows[:, 0] = 2  # filter type "Up" on every row (the first row's "above" is zeros)
    rows[0, 1:] = pixels[0]
    np.subtract(pixels[1:], pixels[:-1], out=rows[1:, 1:])
    raw = rows.tobytes()
    per_strip = -(-height // max(1, round(len(raw) / _STRIP_BYTES)))  # rows per strip, strips of equal size
    pieces = [raw[i * rows.shape[1]: (i + per_strip) * rows.shape[1]] for i in range(0, height, per_strip)]
    deflated = (strips or _deflate_strips)(pieces)
    stream = b"\x78\x01" + b"".join(deflated) + struct.pack(">I", zlib.adler32(raw))
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join((_SIGNATURE, _chunk(b"IHDR", header), _text_chunk(infotext), _chunk(b"IDAT", stream),
                     _chunk(b"IEND", b"")))


def _deflate(data: bytes, last: bool) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_HUFFMAN_ONLY)
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _deflate_strips(pieces: list[bytes]) -> list[bytes]:
    """Deflate the strips on a small shared pool (a few threads: zlib runs without the GIL)."""
    global _pool
    if len(pieces) == 1:
        return [_deflate(pieces[0], True)]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="sdxl-deflate")
    last = len(pieces) - 1
    return list(_pool.map(_deflate, pieces, [i == last for i in range(len(pieces))]))


def _text_chunk(text: str) -> bytes:
    """`parameters` as Pillow's PngInfo.add_text writes it: tEXt if Latin-1, else uncompressed iTXt."""
    key = _KEY.encode("latin-1")
    try:
        return _chunk(b"tEXt", key + b"\0" + text.encode("latin-1"))
    except UnicodeError:
        return _chunk(b"iTXt", key + b"\0\0\0" + b"\0" + b"\0" + text.encode("utf-8"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


@dataclass
class EncodedImages:
    """One request's images on their way to base64 PNGs: `result()` waits for them (on the event loop)."""

    futures: list[Future[str]]
    handed_over_at: float  # time.monotonic() when the job thread's images were handed over
    done_at: float | None = None  # when the last one was encoded

    async def result(self) -> list[str]:
        import asyncio

        try:
            return [await asyncio.wrap_future(f) for f in self.futures]
        except asyncio.CancelledError:  # the client went away: its images not started yet are dropped
            self._cancel()
            raise
        except Exception as exc:
            self._cancel()
            raise ImageEncodingFailed(f"the image could not be encoded as PNG: {type(exc).__name__}: {exc}") from exc

    def _cancel(self) -> None:
        for future in self.futures:
            future.cancel()

    @property
    def seconds(self) -> float:
        """From hand-over to the last image encoded (0 before they are done)."""
        return max(0.0, (self.done_at or self.handed_over_at) - self.handed_over_at)


class ImageEncoder:
    """Encodes images to base64 PNGs on its own threads (`sdxl-encode-N`), never the job thread's.

    `encode` is the engine's `encode_png` (Pillow's or the simulator's); `workers` threads encode
    as many images at once (each also deflates in strips on the shared deflate threads)."""

    def __init__(self, encode: Callable[[Any, str], str], *, workers: int = 2) -> None:
        self._encode = encode
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sdxl-encode")

    def submit(self, images: Sequence[Any], infotexts: Sequence[str]) -> EncodedImages:
        """Hand the images over and return at once; the encodings run on the encoder's threads."""
        batch = EncodedImages(futures=[], handed_over_at=time.monotonic())
        left = [len(images)]
        lock = threading.Lock()

        def one(image: Any, text: str) -> str:
            try:
                return self._encode(image, text)
            finally:
                with lock:
                    left[0] -= 1
                    if not left[0]:
                        batch.done_at = time.monotonic()

        batch.futures = [self._executor.submit(one, im, text) for im, text in zip(images, infotexts, strict=True)]
        return batch

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
