"""Each caller's requests in flight, for A1111's per-caller state routes at the gateway.

A1111 is one process with one job at a time, so its /progress, /interrupt and /skip mean "the job".
A pool runs many callers' jobs at once; at the gateway these routes mean *the caller's own* job:

    GET  /sdapi/v1/progress          the caller's running job, as its worker's /progress shows it
                                     (A1111's ProgressResponse; `current_image` unless
                                     `skip_current_image=true`); a caller with requests but none
                                     running yet gets a queued answer, one with none an idle answer
    POST /internal/progress          {"id_task", "id_live_preview", "live_preview"}: A1111's internal
                                     answer (active, queued, completed, progress, eta, live_preview,
                                     id_live_preview, textinfo) for that task of the caller's
    POST /sdapi/v1/interrupt, skip   stop the caller's running job(s), never another caller's

A caller is an API key's name when keys are configured, else the client address (api_keys.py).
Each request gets a task here for as long as it is in the gateway: its id is the client's own
`force_task_id` (A1111's `id_task`) when it sent one, else `task(<random>)`. The attempts sent to
workers carry the gateway's own names (`sdxlpool-<request>-<attempt>`, forward.py), so two callers
choosing the same id never meet on a worker; `CallerTask` maps one to the other, and answers show
the client's id.

Whether a worker is running a task's attempt is read from its /progress (`state.job` is the
attempt's name). An sdxlpool worker is also told the name when asked to interrupt or skip
(`?id_task=`), so the check and the stop are one step there: a job that ended in between is not
replaced by someone else's being stopped. A plain A1111 server does not name its jobs; its running
job counts as the task's only while the gateway has no other request on it.

This module is pure bookkeeping and answer shapes; the service does the I/O.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from sdxlpool.api.a1111 import ProgressResponse, ProgressState
from sdxlpool.gateway.backends import BackendState

__all__ = ["CallerTask", "CallerTasks", "new_task_id", "is_running", "progress_answer", "internal_answer"]

_FINISHED_KEPT = 4096  # finished (caller, id) pairs remembered, for /internal/progress's `completed`


def new_task_id() -> str:
    """A task id in A1111's shape, for a request that did not name itself."""
    return f"task({uuid.uuid4().hex[:15]})"


@dataclass(eq=False)
class CallerTask:
    """One request of a caller, from admission to answer."""

    id: str  # the client's force_task_id, or new_task_id()
    caller: str  # Caller.identity
    state: BackendState | None = None  # the worker of the current attempt; None: not sent yet
    attempt_id: str | None = None  # that attempt's force_task_id (the job's name on the worker)


class CallerTasks:
    """Every caller's tasks in flight (oldest first) and the recently finished ones."""

    def __init__(self, finished_kept: int = _FINISHED_KEPT) -> None:
        self._running: dict[str, list[CallerTask]] = {}
        self._finished: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._finished_kept = finished_kept

    def begin(self, caller: str, task_id: str | None) -> CallerTask:
        task = CallerTask(task_id or new_task_id(), caller)
        self._running.setdefault(caller, []).append(task)
        self._finished.pop((caller, task.id), None)
        return task

    def sent(self, task: CallerTask, state: BackendState, attempt_id: str) -> None:
        """An attempt of `task` went to `state`'s worker, named `attempt_id`."""
        task.state, task.attempt_id = state, attempt_id

    def end(self, task: CallerTask) -> None:
        tasks = self._running.get(task.caller, [])
        if task in tasks:
            tasks.remove(task)
        if not tasks:
            self._running.pop(task.caller, None)
        self._finished[(task.caller, task.id)] = None
        while len(self._finished) > self._finished_kept:
            self._finished.popitem(last=False)

    def of(self, caller: str) -> list[CallerTask]:
        """The caller's tasks in flight, oldest first."""
        return list(self._running.get(caller, ()))

    def find(self, caller: str, task_id: str) -> CallerTask | None:
        """The caller's task in flight with this id (the newest, should a client reuse an id)."""
        return next((task for task in reversed(self._running.get(caller, ())) if task.id == task_id), None)

    def completed(self, caller: str, task_id: str) -> bool:
        return (caller, task_id) in self._finished


def is_running(answer: dict[str, Any] | None, task: CallerTask) -> bool:
    """Does a worker's /progress `answer` show `task`'s attempt running?"""
    state = answer.get("state") if isinstance(answer, dict) else None
    if task.state is None or not isinstance(state, dict) or not state.get("sampling_steps"):
        return False
    if task.state.backend.kind == "a1111":  # no job names: ours only while nothing else of ours is there
        return task.state.inflight == 1
    return task.attempt_id is not None and state.get("job") == task.attempt_id


def progress_answer(tasks: list[CallerTask], answers: list[dict[str, Any] | None]) -> dict[str, Any]:
    """GET /sdapi/v1/progress for a caller: the first of its `tasks` whose worker's /progress (in
    `answers`, one per task) shows it running, named by the client's id; else queued or idle."""
    for task, answer in zip(tasks, answers, strict=True):
        if answer is not None and is_running(answer, task):
            try:
                shown = ProgressResponse.model_validate(answer)
            except ValidationError:
                continue
            shown.state.job = task.id
            return shown.model_dump()
    if tasks:  # admitted, but waiting: in the gateway's queue or a worker's
        return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState(job_count=len(tasks)),
                                textinfo="Waiting...").model_dump()
    return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState()).model_dump()


def internal_answer(task: CallerTask | None, answer: dict[str, Any] | None, *, completed: bool, position: int,
                    queued: int, id_live_preview: int, live_preview: bool) -> dict[str, Any]:
    """POST /internal/progress in A1111's shape. `task`: the caller's task in flight with the asked
    id (None: not in flight); `answer`: its worker's /progress; `position`/`queued`: its place among
    the caller's tasks not running yet. The live preview's id is the job's step count so far, so a
    client that sends back the id it has is given no picture until a new step made one."""
    if task is None or answer is None or not is_running(answer, task):
        waiting = task is not None
        return {"active": False, "queued": waiting, "completed": completed and not waiting, "progress": None,
                "eta": None, "live_preview": None, "id_live_preview": -1,
                "textinfo": f"In queue: {position}/{queued}" if waiting else "Waiting..."}
    state = answer["state"]
    preview_id = int(state.get("job_no") or 0) * int(state.get("sampling_steps") or 0) \
        + int(state.get("sampling_step") or 0)
    image = answer.get("current_image")
    preview, shown_id = None, id_live_preview
    if live_preview and isinstance(image, str) and image and preview_id != id_live_preview:
        preview, shown_id = f"data:image/png;base64,{image}", preview_id
    return {"active": True, "queued": False, "completed": False,
            "progress": min(1.0, float(answer.get("progress") or 0.0)),
            "eta": answer.get("eta_relative"), "live_preview": preview, "id_live_preview": shown_id,
            "textinfo": answer.get("textinfo")}
