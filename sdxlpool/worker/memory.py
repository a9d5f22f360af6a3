"""The ``cuda`` part of A1111's ``GET /sdapi/v1/memory``: the device's memory and torch's allocator.

A1111's shape: ``system`` (the device's free/used/total, from ``torch.cuda.mem_get_info``), then
from ``torch.cuda.memory_stats``: ``active``, ``allocated``, ``reserved`` and ``inactive`` (split
blocks), each ``{current, peak}`` bytes, and ``events`` ``{retries, oom}`` (allocation retries,
out-of-memory errors). Without a CUDA device, ``{"error": "unavailable"}`` as A1111 answers; a
failure to read it, ``{"error": why}``. torch is imported only on a CUDA worker (the simulator,
device "sim", never loads it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["a1111_cuda", "cuda_memory"]

_POOLS = {"active": "active_bytes", "allocated": "allocated_bytes", "reserved": "reserved_bytes",
          "inactive": "inactive_split_bytes"}


def a1111_cuda(free: int, total: int, stats: Mapping[str, Any]) -> dict[str, Any]:
    """A1111's ``cuda`` object from the device's free/total bytes and torch's allocator statistics."""
    answer: dict[str, Any] = {"system": {"free": free, "used": total - free, "total": total}}
    for name, prefix in _POOLS.items():
        answer[name] = {"current": stats.get(f"{prefix}.all.current", 0), "peak": stats.get(f"{prefix}.all.peak", 0)}
    answer["events"] = {"retries": stats.get("num_alloc_retries", 0), "oom": stats.get("num_ooms", 0)}
    return answer


def cuda_memory(device: str) -> dict[str, Any]:
    """`a1111_cuda` of `device` (the engine's: "cuda", "cuda:1"); ``{"error": ...}`` otherwise."""
    if not device.startswith("cuda"):
        return {"error": "unavailable"}
    try:
        import torch

        free, total = torch.cuda.mem_get_info(device)
        stats = torch.cuda.memory_stats(device)
    except (RuntimeError, AssertionError, ValueError) as exc:  # torch without CUDA asserts; a lost device raises
        return {"error": f"{type(exc).__name__}: {exc}"}
    return a1111_cuda(free, total, stats)
