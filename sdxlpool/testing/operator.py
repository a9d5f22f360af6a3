"""The real kopf operator with sdxlpool's handlers, in-process, in a background thread.

    with EmulatorThread(workdir) as emulator, OperatorThread(emulator.kubeconfig, resync_seconds=2):
        ...  # create pools through a client logged in with emulator.kubeconfig, wait on their children
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

__all__ = ["OperatorThread"]


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
