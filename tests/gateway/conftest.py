"""Real tiny-model workers as processes (so a test can SIGKILL one) and a real gateway in front.

Workers and sim-workers log each job's seed and prompt (`--log-prompts`, `JOB_LOG_ENV`): a failover
test reads there what the first attempt was sent (`first_attempt_seed`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.pool import JOB_LOG_ENV, seeds_sent
from sdxlpool.testing.ports import free_port
from tests.conftest import ServerThread, TinyModel
from tests.operator.conftest import emulator, kube  # noqa: F401 - the Kubernetes emulator, for discovery tests
from tests.polling import metrics, wait_for
from tests.worker.imaging import pixels


class WorkerProcess:
    def __init__(self, tiny: TinyModel, name: str, gpu: str, log_dir: Path) -> None:
        self.name, self.gpu, self.port = name, gpu, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdxlpool", "worker", "--model", str(tiny.base), "--port", str(self.port),
             "--gpu-model", gpu, "--provider", f"provider-{name}", "--location", f"rack-{name}",
             "--worker-name", name, "--default-width", "128", "--default-height", "128", "--device", "cpu",
             "--log-prompts"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            # One torch thread each: three processes of two busy-waiting OpenMP threads on a 2-core
            # machine slow every one of them down many times over.
            env={**os.environ, **JOB_LOG_ENV, "OMP_NUM_THREADS": "1"},
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def backend(self) -> dict:
        return {"name": self.name, "url": self.url, "gpu": self.gpu, "provider": f"provider-{self.name}",
                "location": f"rack-{self.name}", "type": "sdxlpool"}


class WorkerProcesses:
    """The session's tiny-model worker processes, by name: each is started on first use and kept for
    the modules after it that use the same name and GPU (a start costs seconds: torch, the model, the
    warm-up), and started again when a test killed it. The session's `worker_processes` fixture
    (tests/conftest.py) holds the one instance."""

    def __init__(self, tiny: TinyModel, log_dir: Path) -> None:
        self.tiny, self.log_dir = tiny, log_dir
        self.running: dict[str, WorkerProcess] = {}

    def get(self, *specs: tuple[str, str]) -> dict[str, WorkerProcess]:
        """The workers (name, GPU) asked for, ready and idle (nothing running or queued from an earlier
        module); those not running are started together."""
        for name, gpu in specs:
            known = self.running.get(name)
            if known is not None and known.gpu != gpu:
                raise ValueError(f"worker {name} runs as {known.gpu}, asked for as {gpu}")
            if known is None or known.process.poll() is not None:
                self.running[name] = WorkerProcess(self.tiny, name, gpu, self.log_dir)
        chosen = {name: self.running[name] for name, _ in specs}
        for worker in chosen.values():
            worker.wait_ready()
        for worker in chosen.values():
            wait_for(lambda w=worker: _idle(w.url), timeout=120, interval=0.1)
        return chosen

    def stop(self) -> None:
        for worker in self.running.values():
            worker.stop()


def _idle(url: str) -> bool:
    values = metrics(url)
    return values.get(mn.WORKER_INFLIGHT) == 0 and values.get(mn.WORKER_QUEUE_DEPTH) == 0


@pytest.fixture(scope="module")
def workers(worker_processes: WorkerProcesses) -> dict[str, WorkerProcess]:
    """Three tiny-model workers, one of them a memory variant of the A100 (shared with other modules)."""
    return worker_processes.get(("a100-1", "A100"), ("a100-2", "NVIDIA-A100-SXM4-80GB"), ("rtx-1", "RTX 3090"))


def kill_the_one_running_it(workers: tuple[WorkerProcess, ...], timeout: float) -> WorkerProcess:
    """SIGKILL whichever worker has a request in flight (its metrics say so), mid-generation."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if f"{mn.WORKER_INFLIGHT} 1.0" in httpx.get(worker.url + "/metrics", timeout=2).text:
                worker.kill()
                return worker
        time.sleep(0.05)
    raise AssertionError("no worker started the request")


def write_backends(path: Path, backends: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"backends": backends}))
    return path


def start_gateway(backends_file: Path, **overrides) -> ServerThread:
    from sdxlpool.gateway.app import create_app
    from sdxlpool.gateway.settings import GatewaySettings

    port = free_port()
    settings = GatewaySettings(backends_file=backends_file, port=port, reload_interval=0.2,
                               default_width=128, default_height=128, **overrides)
    return ServerThread(create_app(settings), port)


class Sim:
    """A `sdxlpool sim-worker` process; `extra` flags come last, so `--gpu-model X` there wins."""

    def __init__(self, name: str, step_seconds: float, *extra: str, log_dir: Path | None = None) -> None:
        self.name, self.port = name, free_port()
        self.gpu = extra[extra.index("--gpu-model") + 1] if "--gpu-model" in extra else "A100"
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / f"{name}.log" if log_dir is not None else None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdxlpool", "sim-worker", "--gpu-model", "A100", "--step-seconds",
             str(step_seconds), "--port", str(self.port), "--worker-name", name, "--seed", "1", *extra],
            stdout=self.log.open("w") if self.log else subprocess.DEVNULL, stderr=subprocess.STDOUT,
            env={**os.environ, **JOB_LOG_ENV})

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(self.name)

    def backend(self) -> dict:
        return {"name": self.name, "url": self.url, "gpu": self.gpu, "type": "sdxlpool",
                "provider": f"provider-{self.name}", "location": f"rack-{self.name}"}

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


@pytest.fixture
def sims(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Sim]]:
    logs = tmp_path_factory.mktemp("sim-logs")
    started = [Sim(*spec, log_dir=logs) for spec in request.param]
    try:
        for sim in started:
            sim.wait_ready()
        yield started
    finally:
        for sim in started:
            sim.stop()


def body(**extra) -> dict:
    return {"prompt": "x", "steps": 10, "width": 1024, "height": 1024, "sampler_name": "Euler", **extra}


def first_attempt_seed(first_worker_log: Path, prompt: str) -> int:
    """The seed the first worker tried was sent for `prompt` (the only job with it in its log), by
    that worker's own record: what a failover must keep."""
    recorded = seeds_sent(first_worker_log).get(prompt)
    assert recorded is not None and len(recorded) == 1, (prompt, recorded, first_worker_log.read_text()[-2000:])
    return recorded[0]


def assert_failover_kept_the_seed(request: dict, seed: int, image: str, first_worker_log: Path,
                                  survivor_url: str, path: str = "/sdapi/v1/txt2img") -> None:
    """A failed-over answer (its `seed` and `image`) is the first attempt's: `seed` is the one the
    first worker tried was sent, and the survivor, called directly (on `path`) with it, makes the
    same pixels."""
    sent = first_attempt_seed(first_worker_log, request["prompt"])
    assert seed == sent, f"the survivor rendered seed {seed}, the first attempt was sent {sent}"
    direct = httpx.post(survivor_url + path, json={**request, "seed": sent}, timeout=120)
    assert direct.status_code == 200, direct.text
    assert np.array_equal(pixels(image), pixels(direct.json()["images"][0]))
