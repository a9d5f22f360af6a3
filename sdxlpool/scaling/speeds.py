"""Seconds per normalised step of a GPU model: measured when a worker of it runs, else estimated.

The gateway reports each model's measured speed (its workers' `sdxl_worker_step_seconds`). A model
that has no worker up (scaled to zero, or never started) has no measurement, yet the autoscaler
must compare it: it is estimated from a measured model through approximate relative SDXL
throughputs (fp16, 1024x1024; published community benchmarks, rounded), or from the H100's
figure measured in docs/benchmarks.md when nothing is measured at all. A measurement always wins.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["RELATIVE_SPEED", "H100_SECONDS_PER_STEP", "estimate_seconds_per_step"]

RELATIVE_SPEED: Mapping[str, float] = {  # images per second relative to an H100
    "h200": 1.1, "h100": 1.0, "gh200": 1.1, "b200": 1.8, "a100": 0.55, "a100-80gb": 0.55, "a100-40gb": 0.55,
    "l40s": 0.5, "l40": 0.45, "rtx-4090": 0.5, "rtx-6000-ada": 0.45, "rtx-5090": 0.7, "rtx-4080": 0.35,
    "rtx-3090": 0.3, "rtx-3090-ti": 0.33, "rtx-a6000": 0.3, "a10g": 0.2, "a10": 0.2, "rtx-3080": 0.25,
    "l4": 0.15, "t4": 0.06, "v100": 0.2,
}
_UNKNOWN_SPEED = 0.2  # a GPU not in the table: assume a modest card, so it is not preferred by mistake
H100_SECONDS_PER_STEP = 0.085  # docs/benchmarks.md: 2.11 s of GPU for 25 base + refiner steps


def _relative(gpu: str) -> float:
    return RELATIVE_SPEED.get(gpu, RELATIVE_SPEED.get(gpu.split("-")[0], _UNKNOWN_SPEED))


def estimate_seconds_per_step(gpu: str, measured: Mapping[str, float]) -> float:
    """`gpu`'s seconds per normalised step: its own measurement, else scaled from the fastest
    measured model (the most reliable figure), else from the H100 reference."""
    if gpu in measured:
        return measured[gpu]
    if measured:
        reference = min(measured, key=lambda g: measured[g])
        return measured[reference] * _relative(reference) / _relative(gpu)
    return H100_SECONDS_PER_STEP / _relative(gpu)
