"""In-process servers for the hostile-input and security tests: a sim-worker (the worker's app with
the simulated engine) and a gateway in front of it, both run with the uvicorn configuration the CLI
uses (`sdxlpool._serving.server_config`: header deadline, WebSocket message cap)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from sdxlpool._serving import server_config
from sdxlpool.testing.ports import free_port
from tests.conftest import ServerThread
from tests.gateway.conftest import write_backends

COLLECTED: pytest.StashKey[frozenset[str]] = pytest.StashKey()
"""The node ids this session collected, before any -k/-m deselection (test_mutations.py reads it)."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    session.stash[COLLECTED] = frozenset(item.nodeid for item in items)


def serve(app: Any, port: int, **config: Any) -> ServerThread:
    """A ServerThread running `app` with the CLI's uvicorn configuration (plus `config`)."""
    server = ServerThread(app, port)
    options = {"log_level": "warning", "lifespan": "on", **config}
    server.server = uvicorn.Server(server_config(app, host="127.0.0.1", port=port, **options))
    return server


def sim_worker(**settings: Any) -> ServerThread:
    from sdxlpool.sim._app import create_sim_app
    from sdxlpool.sim._settings import SimSettings

    port = free_port()
    values = {"gpu_model": "A100", "step_seconds": 0.0, "port": port, "warmup": False, "default_width": 64,
              "default_height": 64, "default_steps": 2, "worker_name": "sim-1", **settings}
    config = values.pop("server", {})
    app_settings = SimSettings(**values)
    return serve(create_sim_app(app_settings), port, max_message_bytes=app_settings.max_body_bytes, **config)


def gateway(backends: list[dict], folder: Path, **settings: Any) -> ServerThread:
    from sdxlpool.gateway.app import create_app
    from sdxlpool.gateway.settings import GatewaySettings

    port = free_port()
    config = settings.pop("server", {})
    app_settings = GatewaySettings(backends_file=write_backends(folder / "backends.yaml", backends), port=port,
                                   reload_interval=0.2, default_width=64, default_height=64, default_steps=2,
                                   **settings)
    return serve(create_app(app_settings), port, max_message_bytes=app_settings.max_body_bytes, **config)


def backend(worker: ServerThread, name: str = "sim-1", gpu: str = "A100") -> dict:
    return {"name": name, "url": worker.url, "gpu": gpu, "type": "sdxlpool"}


@pytest.fixture(scope="module")
def sim() -> Iterator[ServerThread]:
    with sim_worker() as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def pool(sim: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """A gateway with default settings in front of `sim`."""
    with gateway([backend(sim)], tmp_path_factory.mktemp("pool")) as server:
        server.wait_ready()
        yield server
