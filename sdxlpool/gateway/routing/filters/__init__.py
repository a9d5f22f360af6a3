"""Filters: which backends may serve a request at all. One module per filter.

    gpu_allowed  the GPU models the request allows (X-SDXL-GPU / `gpus`), matched like node labels
    not_tried    never the same backend twice for one request
    available    circuit breaker not open, and the worker says its model is loaded
    freshness    metrics older than a bound are unknown capacity: used only if nothing fresher is left
"""

from sdxlpool.gateway.routing.filters.available import Available
from sdxlpool.gateway.routing.filters.freshness import Freshness
from sdxlpool.gateway.routing.filters.gpu_allowed import GpuAllowed, allowed_rank
from sdxlpool.gateway.routing.filters.not_tried import NotTried

__all__ = ["Available", "Freshness", "GpuAllowed", "NotTried", "allowed_rank"]
