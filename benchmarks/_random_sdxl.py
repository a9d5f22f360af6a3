"""Random-weight SDXL for the GPU benchmarks (`gpu_sdxl.py`, `worker_throughput.py`).

The released weights cannot be fetched here; SDXL's real architecture with random weights has the
same FLOPs and memory. Written once under a work folder and reused by later runs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import httpx

__all__ = ["random_sdxl", "refiner_title"]


def random_sdxl(workdir: Path, arch: str, device: str, dtype: Any) -> tuple[Path, Path]:
    """`workdir/arch/base` and `.../refiner` ("real" or "tiny" architecture), written if missing."""
    from sdxlpool.worker.tiny import write_random_model

    target = workdir / arch
    if (target / "refiner" / "model_index.json").exists():
        return target / "base", target / "refiner"
    started = time.perf_counter()
    paths = write_random_model(target, size=arch, device=device, dtype=dtype)  # type: ignore[arg-type]
    print(f"random {arch} weights written in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return paths


def refiner_title(url: str) -> str:
    """The title a worker at `url` lists its refiner under (what `refiner_checkpoint` names)."""
    models = httpx.get(url + "/sdapi/v1/sd-models", timeout=10).json()
    return next(m["title"] for m in models if m.get("sdxlpool_kind") == "refiner")
