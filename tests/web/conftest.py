"""The web page in a real browser: Debian's Chromium driven by playwright (no browser download),
against a real gateway in front of real tiny-model worker processes, all on 127.0.0.1.

The pool: an A100 and an RTX 3090 worker (tiny model, CPU) and an H100 backend that is down
(nothing listens on its port), each with a price. Two gateways share it: an open one, and a strict
one with an API key of one request per minute (for the 401, 422, 503 and 429 the page renders).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sdxlpool.testing.ports import free_port
from tests.conftest import ServerThread
from tests.gateway.conftest import WorkerProcess, WorkerProcesses, start_gateway, write_backends

CHROMIUM = Path("/usr/bin/chromium")
API_KEY = "sdxl-web-test-key-0123456789"
PRICES = {"a100-1": 1.10, "rtx-1": 0.35}


@pytest.fixture(scope="module")
def pool_workers(worker_processes: WorkerProcesses) -> dict[str, WorkerProcess]:
    """The A100 and RTX 3090 workers (shared with other modules)."""
    return worker_processes.get(("a100-1", "A100"), ("rtx-1", "RTX 3090"))


@pytest.fixture(scope="module")
def backends_file(pool_workers: dict[str, WorkerProcess], tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [{**w.backend(), "pricePerHour": PRICES[w.name]} for w in pool_workers.values()]
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    entries.append({"name": "h100-1", "url": down, "gpu": "H100", "provider": "provider-h100-1",
                    "location": "rack-h100-1", "pricePerHour": 2.49})
    return write_backends(tmp_path_factory.mktemp("web-pool") / "backends.yaml", entries)


@pytest.fixture(scope="module")
def gateway(backends_file: Path) -> Iterator[ServerThread]:
    # Progress read often, so that a short CPU generation still shows a few steps.
    with start_gateway(backends_file, progress_poll=0.05) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def strict_gateway(backends_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    from sdxlpool.gateway.api_keys import hash_key

    keys = tmp_path_factory.mktemp("web-keys") / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "web", "sha256": hash_key(API_KEY), "ratePerMinute": 1,
                                              "burst": 1}]}))
    with start_gateway(backends_file, api_keys_file=keys) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()

