"""Filter `gpu_allowed`: backends of a GPU model the request allows.

`RouteRequest.allowed_gpus` lists GPU models in preference order (from `X-SDXL-GPU: A100,RTX-3090`
or the `gpus` field); empty means any model. A backend is allowed when one of them matches its GPU
the way a pool entry matches a node label (`sdxlpool.api.gpu.GpuName.matches`): a request states
only what it cares about, so "A100" admits a100-80gb and a100-40gb workers while "A100-80GB"
admits only the former. A name that does not parse matches nothing.

`allowed_rank` (the index of the first allowed model a backend matches) is shared with the
`preference` scorer.

Config: `{type: gpu_allowed}` (no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

from sdxlpool.api.gpu import GpuName, parse_gpu_name
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["GpuAllowed", "allowed_rank"]


@dataclass(frozen=True, kw_only=True)
class GpuAllowed:
    name: str = "gpu_allowed"
    empty_reason: ClassVar[str] = "no backend of these GPU models"

    def filter(self, request: RouteRequest, candidates: list[Candidate]) -> list[Candidate]:
        if not request.allowed_gpus:
            return list(candidates)
        return [c for c in candidates if allowed_rank(request.allowed_gpus, c.backend.gpu) is not None]


def allowed_rank(allowed_gpus: tuple[str, ...], gpu: str) -> int | None:
    """Index of the first model in `allowed_gpus` that `gpu` satisfies; 0 when any model is allowed."""
    if not allowed_gpus:
        return 0
    offered = _parse(gpu)
    if offered is None:
        return None
    for rank, wanted in enumerate(allowed_gpus):
        parsed = _parse(wanted)
        if parsed is not None and parsed.matches(offered):
            return rank
    return None


@lru_cache(maxsize=1024)
def _parse(name: str) -> GpuName | None:
    try:
        return parse_gpu_name(name)
    except ValueError:
        return None
