"""Keep a set of processes running, like a Deployment would, until told to stop.

Each process runs in its own session (a Ctrl-C in the terminal reaches only `up`, which then
stops them in order) and gets SIGTERM from the kernel if `up` itself dies (PR_SET_PDEATHSIG), so
no worker outlives it. A process that exits is started again after a backoff of 1 s, doubling up
to 30 s while it keeps failing; one that ran a minute counts as healthy again. Readiness is its
`/readyz` answering 200, reported once per start through `say`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = ["Supervised", "Supervisor"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Supervised:
    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    ready_url: str  # GET 200 = ready
    log: Path
    describe: str = ""  # shown on the ready line
    starts: int = 0
    process: asyncio.subprocess.Process | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, say: Callable[[str], None], *, backoff_min: float = 1.0, backoff_max: float = 30.0,
                 healthy_after: float = 60.0, stop_timeout: float = 10.0) -> None:
        self.say = say
        self.backoff_min, self.backoff_max, self.healthy_after = backoff_min, backoff_max, healthy_after
        self.stop_timeout = stop_timeout
        self.stopping = asyncio.Event()
        self._ready: set[str] = set()

    async def run(self, processes: list[Supervised], on_all_ready: Callable[[], None]) -> None:
        """Run until `stop()`; then terminate every process and wait for it."""
        names = {p.name for p in processes}

        def ready(name: str) -> None:
            fresh = name not in self._ready
            self._ready.add(name)
            if fresh and self._ready == names:
                on_all_ready()

        loops = [asyncio.create_task(self._keep_running(p, ready)) for p in processes]
        await self.stopping.wait()
        await asyncio.gather(*(self._terminate(p) for p in processes))
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    def stop(self) -> None:
        self.stopping.set()

    async def _keep_running(self, proc: Supervised, ready: Callable[[str], None]) -> None:
        failures = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            proc.starts += 1
            with proc.log.open("ab") as log:
                proc.process = await asyncio.create_subprocess_exec(
                    *proc.argv, env={**os.environ, **proc.env}, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
            watcher = asyncio.create_task(self._announce_ready(proc, started, ready))
            code = await proc.process.wait()
            watcher.cancel()
            if self.stopping.is_set():
                return
            failures = 1 if time.monotonic() - started >= self.healthy_after else failures + 1
            delay = min(self.backoff_max, self.backoff_min * 2 ** (failures - 1))
            self.say(f"  {proc.name} exited ({_exit_text(code)}); restarting in {delay:g}s"
                     f"{_last_line(proc.log)}  [log: {proc.log}]")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def _announce_ready(self, proc: Supervised, started: float, ready: Callable[[str], None]) -> None:
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(proc.ready_url)).status_code == 200:
                        break
                await asyncio.sleep(0.25)
        again = f" again (restart {proc.starts - 1})" if proc.starts > 1 else ""
        self.say(f"  ready{again}  {proc.describe or proc.name}  ({time.monotonic() - started:.1f}s)")
        ready(proc.name)

    async def _terminate(self, proc: Supervised) -> None:
        process = proc.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), self.stop_timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def _exit_text(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return f": {lines[-1].strip()[:200]}" if lines else ""
