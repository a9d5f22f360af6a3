"""`sdxlpool up --sim` with autoscaling, end to end as a user watches it: load through the gateway
makes the autoscaler add a worker (its line, and the gateway routes to it), and once the load stops
the worker is drained and removed after the scale-down delay; every request is answered 200."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import httpx

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.ports import free_port
from tests.local.test_up import Up
from tests.polling import metrics, wait_for

POOL = """
apiVersion: sdxlpool.dev/v1alpha1
kind: SDXLPool
metadata: {name: scaling-test}
spec:
  image: example/worker:1
  model: {huggingFace: {repo: stabilityai/stable-diffusion-xl-base-1.0}}
  gpus:
    - model: RTX-3090
      replicas: 1
      pricePerHour: 0.25
      autoscaling: {minReplicas: 1, maxReplicas: 2}
  autoscaling:
    enabled: true
    latencyTarget: {p95Seconds: 6}
    scaleUpDelay: 1
    scaleDownDelay: 4
  defaults: {steps: 8, width: 1024, height: 1024}
"""
CLIENTS = 3  # closed-loop clients: more than one RTX 3090 (2.3 s a request, simulated) serves within 6 s


def _ports() -> tuple[int, int]:
    gateway, first = free_port(), free_port()
    while gateway in (first, first + 1):
        first = free_port()
    return gateway, first


def _backends(gateway: str) -> list[str]:
    return sorted(b["name"] for b in httpx.get(gateway + "/v1/backends", timeout=5).json()["backends"])


def test_up_sim_adds_a_worker_under_load_and_drains_it_after(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL)
    gateway_port, worker_port = _ports()
    gateway = f"http://127.0.0.1:{gateway_port}"
    # The gateway averages arrival rates over 10 s (default 60): the load is gone from them soon after it stops.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SDXLPOOL_CACHE": str(tmp_path / "cache"),
           "SDXLPOOL_GATEWAY_DEMAND_WINDOW": "10"}
    up = Up("--sim", str(pool), "--port", str(gateway_port), "--worker-port", str(worker_port), env=env)
    statuses: list[int] = []
    stop_load = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop_load.is_set():
                statuses.append(http.post(gateway + "/sdapi/v1/txt2img", json={"prompt": "load"}).status_code)

    try:
        up.wait_for("sdxlpool up: ready", timeout=60)
        assert _backends(gateway) == ["rtx-3090-1"]
        clients = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
        for thread in clients:
            thread.start()
        up.wait_for("autoscaler: rtx-3090 1 -> 2 (", timeout=60)
        wait_for(lambda: _backends(gateway) == ["rtx-3090-1", "rtx-3090-2"], timeout=30, interval=0.2)
        # the gateway routes to the new worker: it makes images too
        served = f"{mn.WORKER_REQUESTS}_total{{outcome=success}}"
        wait_for(lambda: metrics(f"http://127.0.0.1:{worker_port + 1}").get(served, 0) >= 1, timeout=30, interval=0.2)

        stop_load.set()
        for thread in clients:
            thread.join(timeout=60)
        up.wait_for("autoscaler: rtx-3090 2 -> 1 (", timeout=60)
        up.wait_for("stopped rtx-3090-2 (drained, exit 0)", timeout=60)
        assert _backends(gateway) == ["rtx-3090-1"]
    finally:
        stop_load.set()
        if up.process.poll() is None:
            up.process.send_signal(signal.SIGINT)
        code = up.process.wait(timeout=30)
    assert statuses and set(statuses) == {200}, statuses
    assert code == 0



FROM_ZERO = """
apiVersion: sdxlpool.dev/v1alpha1
kind: SDXLPool
metadata: {name: from-zero-test}
spec:
  image: example/worker:1
  model: {huggingFace: {repo: stabilityai/stable-diffusion-xl-base-1.0}}
  gpus:
    - model: RTX-3090
      replicas: 1
    - model: H100
      replicas: 0
      pricePerHour: 2.49
      autoscaling: {minReplicas: 0, maxReplicas: 1}
  autoscaling:
    enabled: true
    latencyTarget: {p95Seconds: 10}
    scaleUpDelay: 600
    scaleDownDelay: 3
  defaults: {steps: 4, width: 1024, height: 1024}
"""


def test_up_sim_starts_a_model_from_zero_for_a_request_that_waits_for_it(tmp_path: Path) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(FROM_ZERO)
    gateway_port, worker_port = _ports()
    gateway = f"http://127.0.0.1:{gateway_port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "SDXLPOOL_CACHE": str(tmp_path / "cache"),
           "SDXLPOOL_GATEWAY_DEMAND_WINDOW": "5"}
    up = Up("--sim", str(pool), "--port", str(gateway_port), "--worker-port", str(worker_port), env=env)
    try:
        up.wait_for("sdxlpool up: ready", timeout=60)
        assert _backends(gateway) == ["rtx-3090-1"]
        # Only an H100 will do, and none runs: the request waits in the gateway while one starts
        # (at once, for all the 600 s scaleUpDelay: its user waits for nothing else).
        answer = httpx.post(gateway + "/sdapi/v1/txt2img", json={"prompt": "h100 only"},
                            headers={"X-SDXL-GPU": "H100"}, timeout=60)
        assert answer.status_code == 200 and answer.headers["X-SDXL-Worker"] == "h100-1"
        assert "starting at once" in up.wait_for("autoscaler: h100 0 -> 1 (", timeout=5)
        # Nothing more for it: back to zero after the demand window and the delay.
        up.wait_for("autoscaler: h100 1 -> 0 (", timeout=60)
        up.wait_for("stopped h100-1 (drained, exit 0)", timeout=30)
        assert _backends(gateway) == ["rtx-3090-1"]
    finally:
        if up.process.poll() is None:
            up.process.send_signal(signal.SIGINT)
        code = up.process.wait(timeout=30)
    assert code == 0
