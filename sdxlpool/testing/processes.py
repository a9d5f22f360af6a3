"""sdxlpool commands (sim-workers, workers, a gateway) as child processes on 127.0.0.1.

Used by the benchmarks, the reliability scripts and `pool.LocalPool`. Every child runs in its own
process group, so `stop` takes its children too; `spawn` starts it, `wait_ready` and `wait_scraped`
wait until it serves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

__all__ = ["spawn", "stop", "wait_ready", "wait_scraped"]


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
