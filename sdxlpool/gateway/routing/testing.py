"""Helpers for tests of routing and of the gateway: backend states without any worker.

Like `kopf.testing`, shipped with the package so every test suite builds states the same way.
"""

from __future__ import annotations

from sdxlpool.api.gpu import normalize_gpu_name
from sdxlpool.gateway.backends import Backend, BackendKind, BackendState, Circuit
from sdxlpool.gateway.worker_metrics import WorkerMetrics

__all__ = ["fake_state"]


def fake_state(
    name: str,
    gpu: str = "A100",
    *,
    pending_steps: float = 0.0,
    step_seconds: float = 0.1,
    ready: bool = True,
    scraped_at: float | None = 0.0,
    queue_depth: float = 0.0,
    inflight: float = 0.0,
    kind: BackendKind = "sdxlpool",
    price_per_hour: float | None = None,
    circuit: Circuit | None = None,
    loras: frozenset[str] = frozenset(),
    batch_max: int = 1,
) -> BackendState:
    """A backend state as if its last scrape (sent at `scraped_at`) returned these numbers.

    `kind="a1111"` or `scraped_at=None` gives a state with no metrics at all.
    """
    backend = Backend(name=name, url=f"http://{name}.test:7860", gpu=normalize_gpu_name(gpu),
                      provider=f"provider-{name}", location=f"rack-{name}", kind=kind,
                      price_per_hour=price_per_hour)
    metrics = None
    if kind == "sdxlpool" and scraped_at is not None:
        metrics = WorkerMetrics(queue_depth=queue_depth, inflight=inflight, pending_steps=pending_steps,
                                step_seconds=step_seconds, ready=ready, gpu_model=backend.gpu, loras=loras,
                                batch_max=batch_max)
    return BackendState(backend=backend, metrics=metrics, scraped_at=scraped_at if metrics else None,
                        circuit=circuit or Circuit())
