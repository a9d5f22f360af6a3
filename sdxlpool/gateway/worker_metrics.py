"""A worker's /metrics text -> the numbers routing needs (the contract in :mod:`sdxlpool.api.metric_names`).

Pure: a function of the text, no I/O. The scraper fetches the text; this parses it with
prometheus_client's own parser and keeps only the contract's series:

    sdxl_worker_queue_depth     requests waiting, not counting the running one
    sdxl_worker_inflight        requests running
    sdxl_worker_pending_steps   remaining work of running + queued requests, in normalised steps
    sdxl_worker_step_seconds    wall seconds per normalised step on this GPU (0: not measured yet)
    sdxl_worker_ready           1 when the model is loaded
    sdxl_worker_info            labels gpu_model, provider, location, model (optional)
    sdxl_worker_lora_loaded     labels lora, alias: one series per LoRA held loaded (optional)
    sdxl_worker_batch_max       the worker's --batch-max (optional: absent, as from older workers, is 1)

The first five are required: text without them is not an sdxlpool worker (a plain A1111 server
has no /metrics at all, and is configured as `type: a1111` instead), and `ValueError` says which
are missing. Text that is not in Prometheus' text format raises `ValueError` too. A value that
makes no sense (negative, NaN, infinite) is read as 0, so one odd gauge cannot poison routing;
for `sdxl_worker_batch_max` such a value (or one below 1) is read as 1, and one above
`BATCH_MAX_LIMIT` as that limit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxlpool.api import metric_names as m

__all__ = ["WorkerMetrics", "parse_worker_metrics", "REQUIRED_SERIES", "BATCH_MAX_LIMIT"]

REQUIRED_SERIES = m.WORKER_ROUTING_SERIES
BATCH_MAX_LIMIT = 64  # the worker's own bound on --batch-max (sdxlpool.worker.settings)


@dataclass(frozen=True)
class WorkerMetrics:
    """One scrape of one worker."""

    queue_depth: float
    inflight: float
    pending_steps: float  # normalised steps: one denoising step of one 1024x1024 image = 1.0
    step_seconds: float  # moving average of seconds per normalised step; 0 = not measured yet
    ready: bool
    gpu_model: str = ""
    provider: str = ""
    location: str = ""
    model: str = ""
    loras: frozenset[str] = frozenset()  # names and aliases of the LoRAs held loaded
    batch_max: int = 1  # queued same-shape requests the worker runs as one batch (1: no batching)


def parse_worker_metrics(text: str) -> WorkerMetrics:
    """Parse a worker's /metrics text; `ValueError` when it is not Prometheus text or lacks a series."""
    if not isinstance(text, str):
        raise ValueError(f"worker metrics: expected text, got {type(text).__name__}")
    # Imported here, not at the top: the routing core imports this module for `WorkerMetrics` and
    # stays free of prometheus_client (and the HTTP server modules it loads).
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    info: dict[str, str] = {}
    loras: set[str] = set()
    batch_max: float | None = None
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in REQUIRED_SERIES and sample.name not in values:
                    values[sample.name] = _sane(sample.value)
                elif sample.name == m.WORKER_INFO and sample.value == 1 and not info:
                    info = {key: sample.labels.get(key, "") for key in m.WORKER_INFO_LABELS}
                elif sample.name == m.WORKER_LORA_LOADED and sample.value == 1:
                    loras.update(v for k in m.WORKER_LORA_LOADED_LABELS if (v := sample.labels.get(k)))
                elif sample.name == m.WORKER_BATCH_MAX and batch_max is None:
                    batch_max = sample.value
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"worker metrics: not Prometheus text format ({exc})") from None
    missing = [name for name in REQUIRED_SERIES if name not in values]
    if missing:
        raise ValueError(f"worker metrics: not an sdxlpool worker, /metrics lacks {', '.join(missing)}")
    return WorkerMetrics(
        queue_depth=values[m.WORKER_QUEUE_DEPTH],
        inflight=values[m.WORKER_INFLIGHT],
        pending_steps=values[m.WORKER_PENDING_STEPS],
        step_seconds=values[m.WORKER_STEP_SECONDS],
        ready=values[m.WORKER_READY] >= 0.5,
        **info,
        loras=frozenset(loras),
        batch_max=_batch_max(batch_max),
    )


def _batch_max(value: float | None) -> int:
    """1 when absent or senseless; else the whole number, at most `BATCH_MAX_LIMIT`."""
    if value is None or not math.isfinite(value) or value < 1:
        return 1
    return min(int(value), BATCH_MAX_LIMIT)


def _sane(value: float) -> float:
    return float(value) if math.isfinite(value) and value > 0 else 0.0
