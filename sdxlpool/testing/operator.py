"""The real kopf operator with sdxlpool's handlers, in-process, in a background thread.

    with EmulatorThread(workdir) as emulator, OperatorThread(emulator.kubeconfig):
        ...  # create pools through a client logged in with emulator.kubeconfig, wait on their children
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

__all__ = ["OperatorThread"]


class OperatorThread:
    """`kopf.operator()` with sdxlpool's handlers, in a thread, logged in through a kubeconfig.

    `options` go to `kopf.operator` (default: clusterwide, standalone). Entering sets KUBECONFIG for
    this process and waits until kopf is ready; leaving asks it to stop and joins the thread."""

    def __init__(self, kubeconfig: Path, **options: Any) -> None:
        self.kubeconfig = kubeconfig
        self.options = {"clusterwide": True, "standalone": True, **options}
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name="kopf-operator")

    def _run(self) -> None:
        import kopf

        import sdxlpool.operator.handlers  # noqa: F401 - registers the handlers

        try:
            asyncio.run(kopf.operator(stop_flag=self.stop_flag, ready_flag=self.ready_flag, **self.options))
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            self.error = exc

    def __enter__(self) -> OperatorThread:
        os.environ["KUBECONFIG"] = str(self.kubeconfig)
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
