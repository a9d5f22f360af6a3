"""`sdxlpool up`'s autoscaler: the operator's policy, applied to worker processes on this machine.

A thin shell around the shared decision (sdxlpool.scaling): every few seconds it reads the
gateway's `GET /v1/demand`, calls the same `Autoscaler.step(demand, current, now)` the operator
calls, prints one line per change (`autoscaler: rtx-3090 1 -> 2 (reason)`) and applies it:

* more workers: the lowest free slots of that GPU model (planned by plan.py, ports reserved) are
  started by the Supervisor; each joins the gateway's backends file once its /readyz says 200, so
  no request is sent to a worker still loading;
* fewer workers: the newest are chosen (`plan_changes`, pure); each leaves the backends file first
  (the gateway re-reads it and stops routing there), then gets SIGTERM and drains: it finishes the
  jobs it holds (`--drain-seconds`) and exits, so a scale-down loses no request.

`current` is the workers running or starting per GPU model; a worker draining counts no more (it
takes no new work), and its slot is free again once it has exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxlpool.api.pool_config import WORKER_DRAIN_SECONDS
from sdxlpool.api.ports import DEMAND_PATH
from sdxlpool.local.plan import WorkerPlan
from sdxlpool.local.supervisor import Supervised, Supervisor
from sdxlpool.scaling import Autoscaler, DemandReport, ScalingDecision, ScalingPolicy

__all__ = ["Changes", "LocalAutoscaler", "plan_changes"]

INTERVAL = 2.0  # seconds between two reads of the demand
LEAVE_TIMEOUT = 15.0  # the most seconds a leaving worker waits for the gateway to drop it before its SIGTERM


@dataclass(frozen=True)
class Changes:
    start: tuple[str, ...] = ()  # slots to start, in order
    stop: tuple[str, ...] = ()  # workers to drain and stop


def plan_changes(slots: Mapping[str, Sequence[str]], active: Mapping[str, Collection[str]],
                 desired: Mapping[str, int], *, busy: Collection[str] = (), room: int | None = None) -> Changes:
    """Which worker processes to start and stop so each GPU model runs `desired` of them. Pure.

    `slots`: each GPU model's worker names in slot order (its planned processes); `active`: those
    running or starting now; `busy`: slots not free though not active (draining, not yet exited);
    `room`: how many more may start in all (--max-workers; None: no bound). A model grows into its
    lowest free slots and shrinks from its highest active ones (the newest go first, as a
    ReplicaSet prefers the youngest pods); a model not in `desired` is left alone.
    """
    start: list[str] = []
    stop: list[str] = []
    for gpu, names in slots.items():
        if gpu not in desired:
            continue
        running = [name for name in names if name in active.get(gpu, ())]
        want = min(max(0, desired[gpu]), len(names))
        if want > len(running):
            free = [name for name in names if name not in running and name not in busy]
            start += free[:want - len(running)]
        elif want < len(running):
            stop += running[want:][::-1]
    if room is not None:
        start = start[:max(0, room)]
    return Changes(tuple(start), tuple(stop))


class LocalAutoscaler:
    """Reads the demand, decides with `Autoscaler`, starts and drains worker processes."""

    def __init__(self, policy: ScalingPolicy, workers: Iterable[WorkerPlan], supervised: Mapping[str, Supervised],
                 supervisor: Supervisor, *, gateway_url: str, backends_file: Path, say: Callable[[str], None],
                 max_running: int | None = None, interval: float = INTERVAL,
                 drain_seconds: float = WORKER_DRAIN_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = {w.name: w for w in workers}
        self.slots: dict[str, list[str]] = {}
        for w in self.workers.values():
            self.slots.setdefault(w.slug, []).append(w.name)
        self.supervised, self.supervisor = supervised, supervisor
        self.gateway_url, self.backends_file, self.say = gateway_url, backends_file, say
        self.max_running, self.interval, self.drain_seconds, self.clock = max_running, interval, drain_seconds, clock
        self.autoscaler = Autoscaler(policy, started_at=clock())
        started = [w for w in self.workers.values() if not w.standby]
        self.active: dict[str, list[str]] = {gpu: [n for n in names if not self.workers[n].standby]
                                             for gpu, names in self.slots.items()}
        self.listed: set[str] = {w.name for w in started}  # in the backends file
        self.leaving: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._unreadable: str | None = None

    @property
    def current(self) -> dict[str, int]:
        return {gpu: len(names) for gpu, names in self.active.items()}

    async def run(self, gateway_ready: asyncio.Event | None = None) -> None:
        """Until the supervisor stops: decide and apply every `interval` seconds (from when the
        gateway is ready, when `gateway_ready` is given)."""
        import httpx

        if gateway_ready is not None:
            await gateway_ready.wait()
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                while not self.supervisor.stopping.is_set():
                    demand = await self._demand(client)
                    if demand is not None:
                        self.apply(self.autoscaler.step(demand, self.current, self.clock()), client)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.supervisor.stopping.wait(), self.interval)
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)

    def apply(self, decision: ScalingDecision, client: Any) -> Changes:
        """Print the decision's changes and start or drain the processes that make them."""
        moved = [c for c in decision.changes if self._autoscaled(c.gpu)]  # fixed entries keep what runs
        for change in moved:
            self.say(f"autoscaler: {change.gpu} {change.current} -> {change.desired} ({change.reason})")
        running = sum(len(names) for names in self.active.values()) + len(self.leaving)
        room = None if self.max_running is None else self.max_running - running
        changes = plan_changes(self.slots, self.active, {c.gpu: c.desired for c in moved}, busy=self.leaving,
                               room=room)
        for name in changes.start:
            self.active[self.workers[name].slug].append(name)
            self.supervisor.add(self.supervised[name])
            self._spawn(self._join(name))
        for name in changes.stop:
            self.active[self.workers[name].slug].remove(name)
            self.leaving.add(name)
            self._spawn(self._leave(name, client))
        return changes

    def _autoscaled(self, gpu: str) -> bool:
        model = self.autoscaler.policy.model(gpu)
        return model is not None and model.autoscaled

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _demand(self, client: Any) -> DemandReport | None:
        import httpx

        try:
            response = await client.get(self.gateway_url + DEMAND_PATH)
            if response.status_code != 200:
                raise ValueError(f"GET {DEMAND_PATH}: HTTP {response.status_code}")
            report = DemandReport.model_validate_json(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if problem != self._unreadable:  # once per kind of problem, not every few seconds
                self.say(f"autoscaler: cannot read the gateway's demand ({problem}); holding the workers as they are")
            self._unreadable = problem
            return None
        self._unreadable = None
        return report

    async def _join(self, name: str) -> None:
        """A started worker joins the gateway's backends once it is ready (if still wanted then)."""
        await self.supervised[name].ready.wait()
        if name in self.active[self.workers[name].slug]:
            self.listed.add(name)
            self._write_backends()

    async def _leave(self, name: str, client: Any) -> None:
        """Out of the backends file, out of the gateway's view, then SIGTERM: the worker drains."""
        try:
            self.listed.discard(name)
            self._write_backends()
            await self._gateway_dropped(name, client)
            code = await self.supervisor.remove(name, self.drain_seconds + 10)
            self.say(f"  stopped {name} ({'drained, exit 0' if code == 0 else f'exit {code}'})")
        finally:
            self.leaving.discard(name)

    async def _gateway_dropped(self, name: str, client: Any) -> None:
        import httpx

        deadline = self.clock() + LEAVE_TIMEOUT
        while self.clock() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                backends = (await client.get(self.gateway_url + "/v1/backends")).json()["backends"]
                if all(b["name"] != name for b in backends):
                    return
            await asyncio.sleep(0.2)

    def _write_backends(self) -> None:
        """The gateway's backends file: the listed workers in slot order, replaced whole (the gateway
        never reads half a file)."""
        import yaml

        listed = [w.backend() for w in self.workers.values() if w.name in self.listed]
        temporary = self.backends_file.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump({"backends": listed}, sort_keys=False))
        os.replace(temporary, self.backends_file)
