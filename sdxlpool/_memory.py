"""`keep_large_buffers()`: stop glibc's malloc from handing multi-MB buffers back to the kernel.

The gateway allocates and frees a few MB for every txt2img answer it passes on. With glibc's
defaults, such a buffer comes from a fresh mmap (or a heap grown with brk and trimmed again when
it is freed), so every answer page-faults its megabytes in anew: on the overhead benchmark that was
more than half of the gateway's CPU time per request, nearly all of it in the kernel. Raising the
mmap threshold keeps these buffers on the heap, and raising the trim threshold keeps the freed heap
for the next answer. Memory is still bounded: what is kept is at most what a burst used.

Only glibc has `mallopt` with these knobs; elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_large_buffers"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest allowed value on 64-bit: 8 answers of 1024x1024
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024


def keep_large_buffers() -> bool:
    """Apply the thresholds above to this process; True when the C library took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
