"""What the gateway's HTTP routes share: the placement headers (X-SDXL-*)."""

from __future__ import annotations

from typing import Any

from sdxlpool.gateway.backends import BackendState

__all__ = ["placement_headers", "result_headers"]


def placement_headers(state: BackendState | None, *, attempts: int, queue_seconds: float,
                      inference_seconds: Any) -> dict[str, str]:
    """X-SDXL-* response headers (docs/reference/http.md): where the request ran and how long it took."""
    if state is None:
        return {"X-SDXL-Attempts": str(attempts)}
    backend = state.backend
    return _headers(backend.gpu, backend.provider, backend.location, backend.name, attempts, queue_seconds,
                    inference_seconds)


def result_headers(native: dict[str, Any]) -> dict[str, str]:
    """The same headers for a native result (`events.result`)."""
    timings = native["timings"]
    return _headers(native["gpu_model"], native["provider"], native["location"], native["worker"],
                    native["attempts"], timings["queue_seconds"], timings["inference_seconds"])


def _headers(gpu: str, provider: str, location: str, worker: str, attempts: int, queue_seconds: float,
             inference_seconds: Any) -> dict[str, str]:
    headers = {"X-SDXL-Attempts": str(attempts), "X-SDXL-GPU-Model": gpu, "X-SDXL-Provider": provider,
               "X-SDXL-Location": location, "X-SDXL-Worker": worker, "X-SDXL-Queue-Seconds": f"{queue_seconds:.4f}"}
    if inference_seconds is not None:
        headers["X-SDXL-Inference-Seconds"] = str(inference_seconds)
    # HTTP header values are latin-1; a provider or location may not be.
    return {k: v.encode("latin-1", "replace").decode("latin-1") for k, v in headers.items()}
