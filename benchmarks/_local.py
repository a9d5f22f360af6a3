"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`, so importable)."""

from __future__ import annotations

import subprocess
import time

import httpx


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll a worker's /readyz until 200; fail early if its process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")
