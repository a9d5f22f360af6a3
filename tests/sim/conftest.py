"""Simulated workers on 127.0.0.1: the real worker app with `SimEngine`, served by uvicorn in a thread.

No model, no torch: a sim-worker starts in a fraction of a second, so each test starts the ones it
needs with the settings it is about (rates, queue bound, timing).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from sdxlpool.testing.ports import free_port
from tests.conftest import ServerThread
from tests.polling import metrics, wait_for  # noqa: F401 - shared by the tests here


@contextmanager
def running_sim(**overrides: Any) -> Iterator[ServerThread]:
    from sdxlpool.sim import SimSettings, create_sim_app

    port = free_port()
    settings = SimSettings(
        port=port,
        gpu_model=overrides.pop("gpu_model", "A100"),
        step_seconds=overrides.pop("step_seconds", 0.0),
        provider="Sim Provider",
        location="Lab, 127.0.0.1",
        worker_name=overrides.pop("worker_name", f"sim-{port}"),
        **overrides,
    )
    with ServerThread(create_sim_app(settings), port) as server:
        server.wait_ready(timeout=10)
        yield server


def info_of(response: httpx.Response) -> dict[str, Any]:
    return json.loads(response.json()["info"])


class Background:
    """A txt2img request running in a thread, so the test can look at the worker meanwhile."""

    def __init__(self, url: str, body: dict[str, Any], timeout: float = 30) -> None:
        self.response: httpx.Response | None = None
        self.error: Exception | None = None
        self.started = time.perf_counter()
        self.seconds = 0.0

        def run() -> None:
            try:
                self.response = httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - inspected by the test
                self.error = exc
            self.seconds = time.perf_counter() - self.started

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 30) -> httpx.Response:
        self.thread.join(timeout)
        assert self.response is not None, self.error
        return self.response
