"""The real kopf operator, in-process, against the Kubernetes emulator on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.operator.emulator import EmulatorThread

RESYNC_SECONDS = 2.0  # the safety-net timer, fast in tests


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path_factory.mktemp("kube")) as server:
        yield server


class OperatorThread:
    """`run_operator` (kopf with sdxlpool's handlers) in a thread, logged in through a kubeconfig.

    `settings` override `OperatorSettings` fields (resync_seconds, namespaces, ...) over its
    SDXLPOOL_OPERATOR_* variables; the defaults here suit tests: standalone, fast retries. `memo` is
    the operator's own, to look at what it keeps per pool."""

    def __init__(self, kubeconfig: Path, **settings: Any) -> None:
        import kopf

        from sdxlpool.operator.settings import OperatorSettings

        self.settings = OperatorSettings(**{"kubeconfig": str(kubeconfig), "standalone": True,
                                            "retry_seconds": 0.2, **settings})
        self.memo = kopf.Memo()
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="kopf-operator")

    def _run(self) -> None:
        from sdxlpool.operator.handlers import run_operator

        try:
            asyncio.run(run_operator(self.settings, memo=self.memo, stop_flag=self.stop_flag,
                                     ready_flag=self.ready_flag))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def __enter__(self) -> OperatorThread:
        self.thread.start()
        if not self.ready_flag.wait(30):
            raise TimeoutError(f"operator not ready: {self.error!r}")
        return self

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self.thread.join(timeout=30)


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
