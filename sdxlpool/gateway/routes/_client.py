"""What the gateway's HTTP routes share: the placement headers (X-SDXL-*)."""

from __future__ import annotations

from typing import Any

from sdxlpool.api.headers import FAST_MODE_HEADER
from sdxlpool.gateway.backends import BackendState

__all__ = ["placement_headers", "result_headers"]


def placement_headers(state: BackendState | None, *, attempts: int, queue_seconds: float,
                      inference_seconds: Any, fast_mode: Any = None) -> dict[str, str]:
    """X-SDXL-* response headers (docs/reference/http.md): where the request ran, how long it took
    and in which fast mode (the worker's `info.sdxlpool.fast_mode`; None: not said, no header)."""
    if state is None:
        return {"X-SDXL-Attempts": str(attempts)}
    backend = state.backend
    return _headers(backend.gpu, backend.provider, backend.location, backend.name, attempts, queue_seconds,
                    inference_seconds, fast_mode)


def result_headers(native: dict[str, Any]) -> dict[str, str]:
    """The same headers for a native result (`events.result`)."""
    timings = native["timings"]
    sdxlpool = native.get("info", {}).get("sdxlpool", {})
    return _headers(native["gpu_model"], native["provider"], native["location"], native["worker"],
                    native["attempts"], timings["queue_seconds"], timings["inference_seconds"],
                    sdxlpool.get("fast_mode") if isinstance(sdxlpool, dict) else None)


def _headers(gpu: str, provider: str, location: str, worker: str, attempts: int, queue_seconds: float,
             inference_seconds: Any, fast_mode: Any) -> dict[str, str]:
    headers = {"X-SDXL-Attempts": str(attempts), "X-SDXL-GPU-Model": gpu, "X-SDXL-Provider": provider,
               "X-SDXL-Location": location, "X-SDXL-Worker": worker, "X-SDXL-Queue-Seconds": f"{queue_seconds:.4f}"}
    if inference_seconds is not None:
        headers["X-SDXL-Inference-Seconds"] = str(inference_seconds)
    if isinstance(fast_mode, str) and fast_mode:  # what the worker says; a plain A1111 server says nothing
        headers[FAST_MODE_HEADER] = fast_mode
    # HTTP header values are latin-1; a provider or location may not be.
    return {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()}
