"""The real kopf operator, in-process, against the Kubernetes emulator on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sdxlpool.testing.emulator import EmulatorThread
from sdxlpool.testing.operator import OperatorThread

RESYNC_SECONDS = 2.0  # the safety-net timer, fast in tests


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path_factory.mktemp("kube")) as server:
        yield server


@pytest.fixture(scope="module")
def operator(emulator: EmulatorThread) -> Iterator[OperatorThread]:
    with OperatorThread(emulator.kubeconfig, resync_seconds=RESYNC_SECONDS) as running:
        yield running


@pytest.fixture(scope="module")
def kube(emulator: EmulatorThread):
    from sdxlpool._kube import connect

    return connect(str(emulator.kubeconfig))


def eventually(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy without raising; re-raise its last failure."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (AssertionError, LookupError, StopIteration, TypeError) as exc:  # not there yet
            last = exc
        time.sleep(interval)
    if last is not None:
        raise last
    raise TimeoutError("condition never became true")
