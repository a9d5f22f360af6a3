"""The worker's /metrics, as Prometheus itself reads it: `promtool check metrics` on real scrapes.

promtool parses the exposition format and lints it (names, units, counter suffixes, HELP text), so a
clean run means a real Prometheus scrapes the worker without complaint. It is checked idle, while a
job runs (gauges mid-flight) and after (the histogram has an observation). The metric names and
types are the contract with the gateway (docs/reference/metrics.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sdxlpool.api import metric_names as mn
from tests.conftest import ServerThread

# docs/reference/metrics.md, the worker's table: name -> type.
CONTRACT = {
    mn.WORKER_QUEUE_DEPTH: "gauge",
    mn.WORKER_INFLIGHT: "gauge",
    mn.WORKER_PENDING_STEPS: "gauge",
    mn.WORKER_STEP_SECONDS: "gauge",
    mn.WORKER_READY: "gauge",
    mn.WORKER_INFO: "gauge",
    f"{mn.WORKER_REQUESTS}_total": "counter",
    mn.WORKER_INFERENCE_SECONDS: "histogram",
}
LONG_JOB = {"prompt": "slow", "sampler_name": "Euler", "width": 256, "height": 256, "steps": 30, "seed": 1}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found on PATH: install Debian's `prometheus` package "
                    "(apt-get install --no-install-recommends prometheus)", pytrace=False)
    return path


def scrape(worker: ServerThread) -> str:
    response = httpx.get(worker.url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def assert_promtool_clean(promtool: str, text: str) -> None:
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", f"promtool exit {result.returncode}:\n{output}\n---\n{text}"


def declared_type(text: str, name: str) -> str | None:
    """The `# TYPE` of a metric. prometheus_client writes a counter's TYPE line under its base name in
    the classic format (`sdxl_worker_requests`) and under the `_total` name in newer releases."""
    names = {name, name.removesuffix("_total")}
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        if match.group(1) in names:
            return match.group(2)
    return None


def samples(text: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def assert_contract(text: str) -> dict[str, list]:
    for name, kind in CONTRACT.items():
        assert declared_type(text, name) == kind, f"{name}: TYPE {declared_type(text, name)}, want {kind}"
    found = samples(text)
    for name in (mn.WORKER_QUEUE_DEPTH, mn.WORKER_INFLIGHT, mn.WORKER_PENDING_STEPS,
                 mn.WORKER_STEP_SECONDS, mn.WORKER_READY, mn.WORKER_INFO):
        assert len(found.get(name, [])) == 1, name
    (info,) = found[mn.WORKER_INFO]
    assert info.value == 1
    assert set(info.labels) == {"gpu_model", "provider", "location", "model"}
    assert info.labels["gpu_model"] == "rtx-3090"  # the shared worker's "RTX 3090", normalised
    outcomes = {s.labels["outcome"] for s in found[f"{mn.WORKER_REQUESTS}_total"]}
    assert {"success", "error"} <= outcomes
    for suffix in ("_bucket", "_sum", "_count"):
        assert found.get(mn.WORKER_INFERENCE_SECONDS + suffix), suffix
    assert found[f"{mn.WORKER_INFERENCE_SECONDS}_bucket"][-1].labels["le"] == "+Inf"
    return found


def value(found: dict[str, list], name: str) -> float:
    (sample,) = found[name]
    return sample.value


def test_idle_busy_and_after_scrapes_pass_promtool(worker: ServerThread, promtool: str) -> None:
    idle = scrape(worker)
    assert_promtool_clean(promtool, idle)
    found = assert_contract(idle)
    assert value(found, mn.WORKER_READY) == 1
    assert value(found, mn.WORKER_INFLIGHT) == 0

    result: dict[str, httpx.Response | Exception] = {}

    def run() -> None:
        try:
            result["response"] = httpx.post(worker.url + "/sdapi/v1/txt2img", json=LONG_JOB, timeout=120)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            result["response"] = exc

    job = threading.Thread(target=run, daemon=True)
    job.start()
    deadline = time.monotonic() + 30
    while f"{mn.WORKER_INFLIGHT} 1.0" not in (busy := scrape(worker)):
        assert job.is_alive(), f"the job ended before it was seen running: {result.get('response')!r}"
        assert time.monotonic() < deadline, f"{mn.WORKER_INFLIGHT} never reached 1"
        time.sleep(0.02)
    assert_promtool_clean(promtool, busy)
    found = assert_contract(busy)
    assert value(found, mn.WORKER_PENDING_STEPS) > 0

    job.join(timeout=120)
    response = result.get("response")
    assert isinstance(response, httpx.Response) and response.status_code == 200, response
    after = scrape(worker)
    assert_promtool_clean(promtool, after)
    found = assert_contract(after)
    assert value(found, mn.WORKER_INFLIGHT) == 0
    assert value(found, f"{mn.WORKER_INFERENCE_SECONDS}_count") >= 1
