"""Test helpers: read a server's /metrics as a flat dict, and wait for a condition."""

from __future__ import annotations

import time

import httpx
from prometheus_client.parser import text_string_to_metric_families


def metrics(url: str) -> dict[str, float]:
    """Every sample of /metrics, keyed `name{label=value,...}` (labels sorted)."""
    values = {}
    for family in text_string_to_metric_families(httpx.get(url + "/metrics", timeout=10).text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return values


def wait_for(condition, timeout: float = 30.0, interval: float = 0.02):
    """Poll until `condition()` is truthy and return its value; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("condition not met")
