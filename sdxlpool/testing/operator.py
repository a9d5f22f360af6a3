"""The real kopf operator with sdxlpool's handlers: in-process in a background thread
(`OperatorThread`), or as the real CLI in a process of its own (`OperatorProcess`), which can be
SIGKILLed like a pod whose node vanished and restarts with nothing kept in memory.

    with EmulatorThread(workdir) as emulator, OperatorThread(emulator.kubeconfig, resync_seconds=2):
        ...  # create pools through a client logged in with emulator.kubeconfig, wait on their children
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["OperatorProcess", "OperatorThread", "TimerRuns"]


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


class OperatorProcess:
    """`python -m sdxlpool operator --standalone` (the real CLI) as a child process, logging to `log`
    (appended to across restarts). Each `start` is a new process: no module state survives a kill."""

    def __init__(self, kubeconfig: Path, log: Path, resync_seconds: float) -> None:
        self.kubeconfig = kubeconfig
        self.log = log
        self.env = {**os.environ, "SDXLPOOL_OPERATOR_RESYNC_SECONDS": str(resync_seconds),
                    "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.starts = 0
        self.kills = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        with self.log.open("a") as log:
            log.write(f"\n===== start {self.starts + 1} =====\n")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sdxlpool", "operator", "--kubeconfig", str(self.kubeconfig), "--standalone"],
            stdout=self.log.open("a"), stderr=subprocess.STDOUT, env=self.env,
        )
        self.started_at = time.monotonic()
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> bool:
        """SIGKILL, and wait until it is gone. False if it was not running."""
        with self._lock:
            if not self.alive:
                return False
            assert self.process is not None
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
            self.kills += 1
            return True

    def stop(self) -> int | None:
        """SIGTERM (SIGKILL if it does not exit in 30 s); its exit status, None if never started."""
        if self.alive:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode if self.process is not None else None


class TimerRuns(logging.Handler):
    """Counts, per pool name, the runs of the operator's resync timer, from what kopf logs (its
    per-object records carry the pool): `with TimerRuns() as runs: ... runs.snapshot()`. Works for
    an in-process operator (`OperatorThread`)."""

    TIMER = "Timer 'pool_resync' succeeded."  # what kopf logs, at INFO, after each run on a pool

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: Counter[str] = Counter()
        self._lock_counts = threading.Lock()
        self._logger = logging.getLogger("kopf.objects")
        self._level = self._logger.level

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.TIMER:
            with self._lock_counts:
                self.counts[(getattr(record, "k8s_ref", None) or {}).get("name") or "?"] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock_counts:
            return Counter(self.counts)

    def __enter__(self) -> TimerRuns:
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)  # kopf logs a handler's success at INFO
        return self

    def __exit__(self, *exc: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
