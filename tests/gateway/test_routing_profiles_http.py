"""Routing profiles end to end: `sdxlpool gateway --routing FILE` in front of sim-workers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from sdxlpool.testing.ports import free_port
from tests.gateway.conftest import body, start_gateway, write_backends

FILTERS = ["gpu_allowed", "not_tried", "available", {"type": "freshness", "staleAfter": 2.0}]


def _profile(path: Path, picker: str, scorers: list | None = None) -> Path:
    path.write_text(yaml.safe_dump({"routing": {"filters": FILTERS, "scorers": scorers or [], "picker": picker}}))
    return path


def _wait_all_scraped(url: str, count: int, process: subprocess.Popen | None = None) -> None:
    """Until the gateway has good metrics of all `count` backends (so none is filtered as stale)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"gateway exited with {process.returncode}")
        try:
            view = httpx.get(url + "/v1/backends", timeout=2).json()["backends"]
            if len(view) == count and all(b["ready"] and b["available"] for b in view):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.1)
    raise TimeoutError("the gateway did not scrape every backend")


def _post(url: str, seed: int) -> str:
    response = httpx.post(url + "/sdapi/v1/txt2img", json=body(seed=seed), timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["X-SDXL-Attempts"] == "1"
    return response.headers["X-SDXL-Worker"]


# Speeds 10x apart: the default profile would send most of the work to the fast ones.
@pytest.mark.parametrize("sims", [[("w-c", 0.002), ("w-a", 0.02), ("w-b", 0.002)]], indirect=True)
def test_round_robin_profile_rotates_strictly_in_name_order(sims, tmp_path) -> None:
    backends = write_backends(tmp_path / "backends.yaml", [s.backend() for s in sims])
    routing = _profile(tmp_path / "round-robin.yaml", "round_robin")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "gateway.log"
    gateway = subprocess.Popen(
        [sys.executable, "-m", "sdxlpool", "gateway", "--backends", str(backends), "--routing", str(routing),
         "--port", str(port)], stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        _wait_all_scraped(url, len(sims), gateway)
        # One at a time: a, b, c, a, b, c, ... whatever the speeds.
        served = [_post(url, seed) for seed in range(7)]
        assert served == ["w-a", "w-b", "w-c", "w-a", "w-b", "w-c", "w-a"], log.read_text()[-2000:]
        # A burst: the rotation continues (w-b next), so each worker takes exactly a third.
        with ThreadPoolExecutor(max_workers=9) as pool:
            burst = list(pool.map(lambda seed: _post(url, seed), range(100, 109)))
        assert Counter(burst) == {"w-a": 3, "w-b": 3, "w-c": 3}
        assert 'plugin="round_robin"' in httpx.get(url + "/metrics", timeout=5).text
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait(timeout=5)


@pytest.mark.parametrize("sims", [[("w-b", 0.002), ("w-a", 0.02)]], indirect=True)
def test_first_free_profile_fills_the_first_idle_worker_by_name(sims, tmp_path) -> None:
    backends = write_backends(tmp_path / "backends.yaml", [s.backend() for s in sims])
    with start_gateway(backends, routing_file=_profile(tmp_path / "first-free.yaml", "first_free")) as gateway:
        gateway.wait_ready()
        _wait_all_scraped(gateway.url, len(sims))
        served = []
        for seed in range(4):
            served.append(_post(gateway.url, seed))
            time.sleep(0.4)  # a few scrapes: w-a shows no pending work again
        # The slower w-a is first by name and idle each time, so it takes everything.
        assert served == ["w-a"] * 4
