"""This process's memory: `keep_large_buffers()` and `ram_usage()`.

`keep_large_buffers()` stops glibc's malloc from handing multi-MB buffers back to the kernel.

The gateway allocates and frees a few MB for every txt2img answer it passes on. With glibc's
defaults, such a buffer comes from a fresh mmap (or a heap grown with brk and trimmed again when
it is freed), so every answer page-faults its megabytes in anew: on the overhead benchmark that was
more than half of the gateway's CPU time per request, nearly all of it in the kernel. Raising the
mmap threshold keeps these buffers on the heap, and raising the trim threshold keeps the freed heap
for the next answer. Memory is still bounded: what is kept is at most what a burst used.

Only glibc has `mallopt` with these knobs; elsewhere (musl, macOS) this does nothing.

`ram_usage()` is the ``ram`` part of A1111's ``GET /sdapi/v1/memory`` (worker and gateway), read
from the OS without psutil (a test-only dependency here): ``used`` is this process's resident
memory, ``total`` the machine's physical memory, ``free`` their difference, as A1111 computes them.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

__all__ = ["keep_large_buffers", "ram_usage"]

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


def ram_usage() -> dict[str, Any]:
    """``{"free", "used", "total"}`` in bytes (A1111's meaning, see above), or ``{"error": why}``
    where the OS does not say (no /proc: not Linux)."""
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = os.sysconf("SC_PHYS_PAGES") * page
        with open("/proc/self/statm") as statm:
            used = int(statm.read().split()[1]) * page  # resident pages
    except (OSError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"free": total - used, "used": used, "total": total}
