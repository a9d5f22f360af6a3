"""Local processes for the benchmark and reliability scripts: sim-workers and a gateway on 127.0.0.1.

Shared by `benchmarks/*.py` (run as `python benchmarks/NAME.py`, so importable as `_local`) and
`reliability/*.py` (which put this folder on `sys.path`). Every child runs in its own process
group, so `stop` takes its children too; `spawn` starts it, `wait_ready` and `wait_scraped` wait
until it serves.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

__all__ = ["free_port", "spawn", "stop", "wait_ready", "wait_scraped", "percentile", "poisson_arrivals"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(command: list[str], log: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """A child in its own process group (so `stop` takes its children too), logging to `log`.

    `env` is added to this process's environment (SDXLPOOL_LOG_LEVEL is WARNING unless given)."""
    full_env = {**os.environ, "SDXLPOOL_LOG_LEVEL": "WARNING", **(env or {})}
    with log.open("a") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM to the child's process group, SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGCONT)  # a stopped (SIGSTOP) process cannot act on SIGTERM
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass


def wait_ready(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll a worker's (or the gateway's) /readyz until 200; fail early if its process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def wait_scraped(url: str, count: int, timeout: float = 30.0) -> None:
    """Until the gateway at `url` holds fresh metrics of all `count` backends (none filtered out as unknown)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = httpx.get(url + "/v1/backends", timeout=2).json()["backends"]
        if len(view) == count and all(b["ready"] and b["available"] and b["stepSeconds"] for b in view):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not scrape all {count} backends")


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Percentile with linear interpolation between closest ranks (numpy's default); None when empty."""
    if not sorted_values:
        return None
    pos = (len(sorted_values) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(sorted_values) - 1)
    return round(sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low), 4)


def poisson_arrivals(rng: random.Random, rate: float, count: int, seconds: float) -> list[float]:
    """Open-loop Poisson arrival offsets (seconds), at most `count`, all before `seconds`."""
    arrivals, t = [], 0.0
    while len(arrivals) < count:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        arrivals.append(t)
    return arrivals
