"""Parsing a worker's /metrics: a real worker's text, hand-written texts, and text that is not metrics."""

from __future__ import annotations

import math

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.api.gpu import normalize_gpu_name
from sdxlpool.gateway.worker_metrics import (
    BATCH_MAX_LIMIT,
    REQUIRED_SERIES,
    WorkerMetrics,
    parse_worker_metrics,
)


def test_a_real_workers_metrics(worker) -> None:
    metrics = parse_worker_metrics(httpx.get(worker.url + "/metrics", timeout=10).text)
    assert metrics.ready is True
    assert normalize_gpu_name(metrics.gpu_model) == "rtx-3090"
    assert (metrics.provider, metrics.location) == ("Test Provider", "Lab, 127.0.0.1")
    assert metrics.model
    assert metrics.queue_depth >= 0 and metrics.inflight >= 0 and metrics.pending_steps >= 0
    assert metrics.step_seconds >= 0
    assert metrics.batch_max == 1  # exported, and 1 without --batch-max


def test_a_real_worker_measures_its_step_time(worker) -> None:
    response = httpx.post(worker.url + "/sdapi/v1/txt2img",
                          json={"prompt": "a fox", "steps": 3, "width": 128, "height": 128}, timeout=120)
    assert response.status_code == 200, response.text
    metrics = parse_worker_metrics(httpx.get(worker.url + "/metrics", timeout=10).text)
    assert metrics.step_seconds > 0
    assert (metrics.queue_depth, metrics.inflight, metrics.pending_steps) == (0, 0, 0)


def _text(**values: float) -> str:
    series = {"queue_depth": 1, "inflight": 1, "pending_steps": 37.5, "step_seconds": 0.08, "ready": 1, **values}
    lines = []
    for name, value in series.items():
        lines += [f"# HELP sdxl_worker_{name} x", f"# TYPE sdxl_worker_{name} gauge", f"sdxl_worker_{name} {value}"]
    return "\n".join(lines) + "\n"


INFO = (f'# TYPE {mn.WORKER_INFO} gauge\n'
        f'{mn.WORKER_INFO}{{gpu_model="a100-80gb",location="US-East, rack \\"7\\"",model="sdxl-base",'
        'provider="Foundry Staking"} 1.0\n')
OTHER = (f'# TYPE {mn.WORKER_REQUESTS} counter\n{mn.WORKER_REQUESTS}_total{{outcome="success"}} 12.0\n'
         f'# TYPE {mn.WORKER_INFERENCE_SECONDS} histogram\n{mn.WORKER_INFERENCE_SECONDS}_bucket{{le="+Inf"}} 12.0\n'
         f'{mn.WORKER_INFERENCE_SECONDS}_count 12.0\n{mn.WORKER_INFERENCE_SECONDS}_sum 30.0\n')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(_text(), WorkerMetrics(1, 1, 37.5, 0.08, True), id="required-series-only"),
        pytest.param(_text() + INFO + OTHER,
                     WorkerMetrics(1, 1, 37.5, 0.08, True, "a100-80gb", "Foundry Staking", 'US-East, rack "7"',
                                   "sdxl-base"), id="with-info-and-other-families"),
        pytest.param(_text(ready=0, step_seconds=0), WorkerMetrics(1, 1, 37.5, 0.0, False), id="loading-unmeasured"),
        pytest.param(_text(step_seconds="NaN", pending_steps=-3, queue_depth="+Inf"),
                     WorkerMetrics(0, 1, 0.0, 0.0, True), id="nonsense-values-read-as-0"),
    ],
)
def test_parse(text: str, expected: WorkerMetrics) -> None:
    parsed = parse_worker_metrics(text)
    assert parsed == expected
    assert all(math.isfinite(v) for v in (parsed.queue_depth, parsed.pending_steps, parsed.step_seconds))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "lacks " + ", ".join(REQUIRED_SERIES), id="empty"),
        pytest.param("hello world\n", "not Prometheus text format", id="plain-text"),
        pytest.param("<html><body>502 Bad Gateway</body></html>", "not Prometheus text format", id="html"),
        pytest.param('{"detail": "Not Found"}', "not Prometheus text format", id="json-404-of-a-plain-a1111"),
        pytest.param("\n".join(line for line in _text().splitlines() if "step_seconds" not in line),
                     f"lacks {mn.WORKER_STEP_SECONDS}", id="missing-one-series"),
        pytest.param("process_cpu_seconds_total 3.0\n", "not an sdxlpool worker", id="some-other-exporter"),
    ],
)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="worker metrics: ") as raised:
        parse_worker_metrics(text)
    assert message in str(raised.value)


def _batch_max(value: str) -> str:
    return f"# HELP {mn.WORKER_BATCH_MAX} x\n# TYPE {mn.WORKER_BATCH_MAX} gauge\n{mn.WORKER_BATCH_MAX} {value}\n"


@pytest.mark.parametrize(
    ("text", "batch_max"),
    [
        pytest.param(_text(), 1, id="absent-older-worker-is-1"),
        pytest.param(_text() + _batch_max("4.0"), 4, id="batch-max-4"),
        pytest.param(_text() + _batch_max("1.0"), 1, id="batch-max-1"),
        pytest.param(_text() + _batch_max("2.7"), 2, id="fraction-rounds-down"),
        pytest.param(_text() + _batch_max("0.0"), 1, id="zero-is-1"),
        pytest.param(_text() + _batch_max("-3"), 1, id="negative-is-1"),
        pytest.param(_text() + _batch_max("NaN"), 1, id="nan-is-1"),
        pytest.param(_text() + _batch_max("+Inf"), 1, id="infinite-is-1"),
        pytest.param(_text() + _batch_max("1e9"), BATCH_MAX_LIMIT, id="huge-is-the-limit"),
    ],
)
def test_batch_max_is_optional(text: str, batch_max: int) -> None:
    """sdxl_worker_batch_max is not required (plain A1111-style and older workers lack it): absent or
    senseless reads as 1, so such a worker is priced as one that does not batch."""
    parsed = parse_worker_metrics(text)
    assert parsed.batch_max == batch_max and isinstance(parsed.batch_max, int)
    assert mn.WORKER_BATCH_MAX not in REQUIRED_SERIES
