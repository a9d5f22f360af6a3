"""`sdxlpool up examples/local-pool.yaml` end to end, as a user runs it: the whole pool comes up,
serves through its gateway, restarts a worker that dies, refuses a second `up` on the same ports,
and stops on Ctrl-C with no process left behind."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from sdxlpool.testing.ports import free_port

EXAMPLE = Path(__file__).parents[2] / "examples" / "local-pool.yaml"


class Up:
    """A running `sdxlpool up`, its output read line by line in the background."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "sdxlpool", "up", *args], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} within {timeout}s; output:\n" + "\n".join(self.seen))


@pytest.fixture
def ports() -> tuple[int, int]:
    gateway, first = free_port(), free_port()
    while gateway in range(first, first + 3):  # the three workers take consecutive ports
        first = free_port()
    return gateway, first


@pytest.fixture
def env(up_cache: Path) -> dict[str, str]:
    return {**os.environ, "SDXLPOOL_CACHE": str(up_cache), "PYTHONUNBUFFERED": "1",
            "HF_HUB_CACHE": str(up_cache / "no-hub")}


@pytest.fixture
def pool(ports, env) -> Iterator[Up]:
    gateway_port, worker_port = ports
    up = Up(str(EXAMPLE), "--port", str(gateway_port), "--worker-port", str(worker_port), "--device", "cpu", env=env)
    up.gateway = f"http://127.0.0.1:{gateway_port}"
    up.worker_port = worker_port
    try:
        yield up
    finally:
        if up.process.poll() is None:
            up.process.kill()
            up.process.wait(30)


def test_up_runs_the_pool_restarts_a_dead_worker_and_stops_cleanly(pool: Up, env, ports, tmp_path: Path) -> None:
    pool.wait_for("random tiny weights", timeout=30)
    pool.wait_for("sdxlpool up: ready", timeout=240)
    assert sum("  ready  " in line for line in pool.seen) == 4  # three workers and the gateway

    # Generate through the gateway, on each GPU model of the spec.
    for gpu, worker in (("A100", "a100-1"), ("RTX-4090", "rtx-4090-1"), ("RTX-3090", "rtx-3090-1")):
        response = httpx.post(pool.gateway + "/sdapi/v1/txt2img", json={"prompt": "a fox", "steps": 3},
                              headers={"X-SDXL-GPU": gpu}, timeout=120)
        assert response.status_code == 200, response.text
        assert response.headers["X-SDXL-Worker"] == worker
    assert response.headers["X-SDXL-Provider"] == "Akash Community"

    # The command-line client against the running pool: progress, the PNG, where it ran.
    png = tmp_path / "fox.png"
    client = subprocess.run([sys.executable, "-m", "sdxlpool", "generate", "a fox", "--gateway", pool.gateway,
                             "--gpu", "RTX-4090", "--steps", "4", "--seed", "5", "-o", str(png)],
                            env=env, capture_output=True, text=True, timeout=180)
    assert client.returncode == 0, client.stderr
    assert "step 4/4" in client.stderr and "Europlots" in client.stdout and "EU-Central" in client.stdout
    assert png.read_bytes().startswith(b"\x89PNG")

    # A second `up` on the same ports: one clear line, exit 2, nothing started.
    second = subprocess.run([sys.executable, "-m", "sdxlpool", "up", str(EXAMPLE), "--port", str(ports[0]),
                             "--worker-port", str(ports[1]), "--device", "cpu"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2, second.stderr
    assert second.stderr.count("\n") == 1 and f"127.0.0.1:{ports[1]}" in second.stderr
    assert "another `sdxlpool up`" in second.stderr

    # Kill a worker: `up` restarts it like a Deployment, and the pool serves that model again.
    children = psutil.Process(pool.process.pid).children(recursive=True)
    victim = next(c for c in children if f"{pool.worker_port}" in c.cmdline())
    victim.kill()
    pool.wait_for("a100-1 exited (killed by SIGKILL); restarting", timeout=30)
    pool.wait_for("ready again (restart 1)  a100-1", timeout=180)
    response = httpx.post(pool.gateway + "/sdapi/v1/txt2img", json={"prompt": "again", "steps": 2},
                          headers={"X-SDXL-GPU": "A100"}, timeout=120)
    assert response.status_code == 200 and response.headers["X-SDXL-Worker"] == "a100-1"

    # Ctrl-C: everything stops, exit 0, no process left.
    children = psutil.Process(pool.process.pid).children(recursive=True)
    assert len(children) == 4
    pool.process.send_signal(signal.SIGINT)
    assert pool.process.wait(timeout=60) == 0
    pool.wait_for("sdxlpool up: stopped", timeout=5)
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [p.cmdline() for p in alive]


def test_up_refuses_a_bad_pool_with_one_clear_error(tmp_path: Path, env) -> None:
    bad = tmp_path / "pool.yaml"
    bad.write_text(EXAMPLE.read_text().replace("model: A100", "model: Banana-9000"))
    result = subprocess.run([sys.executable, "-m", "sdxlpool", "up", str(bad)], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "spec.gpus[0].model" in result.stderr and "Banana-9000" in result.stderr
