"""Keep a set of processes running, like a Deployment would, until told to stop.

Each process runs in its own session (a Ctrl-C in the terminal reaches only `up`, which then
stops them in order) and gets SIGTERM from the kernel if `up` itself dies (PR_SET_PDEATHSIG), so
no worker outlives it. A process that exits is started again after a backoff of 1 s, doubling up
to 30 s while it keeps failing; one that ran a minute counts as healthy again. Readiness is its
`/readyz` answering 200, reported once per start through `say`.

Processes join and leave while it runs (`add`, `remove`), as a Deployment's pods do when its
replicas change: a removed process gets SIGTERM and as long as it asks for (`remove`'s timeout: a
worker drains its jobs first) before a SIGKILL, and is not started again.
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
    ready: asyncio.Event = field(default_factory=asyncio.Event, repr=False)  # set while this start is ready
    leaving: bool = False  # removed: not started again once it exits


class Supervisor:
    def __init__(self, say: Callable[[str], None], *, backoff_min: float = 1.0, backoff_max: float = 30.0,
                 healthy_after: float = 60.0, stop_timeout: float = 10.0) -> None:
        self.say = say
        self.backoff_min, self.backoff_max, self.healthy_after = backoff_min, backoff_max, healthy_after
        self.stop_timeout = stop_timeout
        self.stopping = asyncio.Event()
        self._ready: set[str] = set()
        self._kept: dict[str, tuple[Supervised, asyncio.Task[None]]] = {}  # name -> process, its keeper
        self._leaving: dict[str, Supervised] = {}  # removed, not yet exited

    async def run(self, processes: list[Supervised], on_all_ready: Callable[[], None]) -> None:
        """Run `processes` (and those `add`ed meanwhile) until `stop()`; then terminate every
        process and wait for it. `on_all_ready`: once, when each of `processes` was ready."""
        names = {p.name for p in processes}

        def ready(name: str) -> None:
            fresh = name not in self._ready
            self._ready.add(name)
            if fresh and self._ready == names:
                on_all_ready()

        for process in processes:
            self.add(process, ready)
        await self.stopping.wait()
        kept = [p for p, _ in self._kept.values()] + list(self._leaving.values())
        await asyncio.gather(*(self._terminate(p) for p in kept))
        loops = [task for _, task in self._kept.values()]
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)

    def stop(self) -> None:
        self.stopping.set()

    @property
    def names(self) -> set[str]:
        """The processes kept running now (not those being removed)."""
        return set(self._kept)

    def add(self, proc: Supervised, on_ready: Callable[[str], None] | None = None) -> None:
        """Start `proc` and keep it running, like the ones `run` was given."""
        if proc.name in self._kept or proc.name in self._leaving:
            raise ValueError(f"{proc.name} is already supervised")
        proc.leaving = False
        task = asyncio.create_task(self._keep_running(proc, on_ready or (lambda _name: None)), name=f"keep-{proc.name}")
        self._kept[proc.name] = (proc, task)

    async def remove(self, name: str, timeout: float) -> int | None:
        """Stop `name` for good: SIGTERM, up to `timeout` seconds to exit (a worker finishes its
        jobs meanwhile), then SIGKILL. Returns its exit code (None: it was not running)."""
        proc, task = self._kept.pop(name)
        proc.leaving = True
        self._leaving[name] = proc
        try:
            while True:
                code = await self._terminate(proc, timeout)
                done, _ = await asyncio.wait({task}, timeout=0.5)
                if done:
                    break
                if proc.process is None or proc.process.returncode is not None:
                    task.cancel()  # waiting out a restart backoff: nothing left to stop
                # else it was being started again as it was removed: that start is stopped next
        finally:
            self._leaving.pop(name, None)
        return code

    async def _keep_running(self, proc: Supervised, ready: Callable[[str], None]) -> None:
        failures = 0
        while not self.stopping.is_set() and not proc.leaving:
            started = time.monotonic()
            proc.starts += 1
            proc.ready.clear()
            with proc.log.open("ab") as log:
                proc.process = await asyncio.create_subprocess_exec(
                    *proc.argv, env={**os.environ, **proc.env}, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                    stderr=asyncio.subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
            watcher = asyncio.create_task(self._announce_ready(proc, started, ready))
            code = await proc.process.wait()
            watcher.cancel()
            proc.ready.clear()
            if self.stopping.is_set() or proc.leaving:
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
        proc.ready.set()
        ready(proc.name)

    async def _terminate(self, proc: Supervised, timeout: float | None = None) -> int | None:
        process = proc.process
        if process is None:
            return None
        if process.returncode is not None:
            return process.returncode
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            return await asyncio.wait_for(process.wait(), self.stop_timeout if timeout is None else timeout)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            return await process.wait()


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
