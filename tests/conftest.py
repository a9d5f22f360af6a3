"""Shared fixtures: tiny SDXL weights and real worker servers on 127.0.0.1.

Servers run in-process (uvicorn in a thread, the real app and the real diffusers pipeline on the
tiny model) so a failing test shows the server's log in its captured output.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sdxlpool.testing.ports import free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One torch (OpenMP) thread in every process the tests start, which inherit it: the tiny model's
# tensors gain nothing from a second thread, while on a 2-core machine running the suite's servers,
# workers and benchmark scripts side by side, torch's spinning threads fight over the cores (two
# benchmark smoke runs took 212 s with torch's default beside other work, 50 s with one). Not in this
# process: torch is imported first, so its OpenMP runtime has already read the variable. Its exact
# tests keep the thread count they were written with (test_single_file's bit-equal refiner images
# differ by 1e-5 with one thread: oneDNN picks another kernel).
import torch  # noqa: E402,F401 - before the variable below, on purpose

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Skeleton configs and checkpoint hashes go to a throwaway folder, not the user's ~/.cache.
os.environ.setdefault("SDXLPOOL_CACHE", tempfile.mkdtemp(prefix="sdxlpool-test-cache-"))


@dataclass(frozen=True)
class TinyModel:
    base: Path
    refiner: Path
    other_base: Path  # same architecture, other weights: for checkpoint switching


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    from sdxlpool.worker.tiny import write_tiny_model

    base, refiner = write_tiny_model(tmp_path_factory.mktemp("tiny", numbered=False))
    other, _ = write_tiny_model(tmp_path_factory.mktemp("tiny-b", numbered=False), seed=1)
    return TinyModel(base, refiner, other)


class ServerThread:
    """A real uvicorn server for an ASGI app, on 127.0.0.1, in a background thread."""

    def __init__(self, app, port: int) -> None:
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.thread.is_alive():
                raise RuntimeError("server thread died")
            time.sleep(0.1)
        raise TimeoutError(f"{self.url} not ready after {timeout}s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start_worker(tiny: TinyModel, **overrides) -> ServerThread:
    from sdxlpool.worker.app import create_app
    from sdxlpool.worker.settings import WorkerSettings

    port = free_port()
    engine = overrides.pop("engine", None)  # a callable: settings -> Engine (default: diffusers)
    settings = WorkerSettings(
        models=overrides.pop("models", [tiny.base, tiny.other_base]),
        refiner=overrides.pop("refiner", tiny.refiner),
        embeddings_dir=overrides.pop("embeddings_dir", tiny.base.parent / "embeddings"),
        port=port,
        default_width=128,
        default_height=128,
        default_steps=8,
        gpu_model=overrides.pop("gpu_model", "RTX 3090"),
        provider="Test Provider",
        location="Lab, 127.0.0.1",
        **overrides,
    )
    return ServerThread(create_app(settings, engine=engine(settings) if engine else None), port)


@pytest.fixture(scope="session")
def worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    """The shared tiny-model worker. Tests that change its options must restore them."""
    with start_worker(tiny_model) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="session")
def worker_processes(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Tiny-model `sdxlpool worker` processes shared by the session's modules, by name and GPU
    (tests/gateway/conftest.py's WorkerProcesses: started on first use, again when a test killed one)."""
    from tests.gateway.conftest import WorkerProcesses

    processes = WorkerProcesses(tiny_model, tmp_path_factory.mktemp("worker-process-logs"))
    try:
        yield processes
    finally:
        processes.stop()


@pytest.fixture
def client(worker: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=worker.url, timeout=120) as c:
        yield c
