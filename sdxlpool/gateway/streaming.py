"""Run one generation as a task and follow its events until it ends (WebSocket and NDJSON).

`follow(task, queue)` yields what the task's `on_event` put in `queue`, then the last event:
`done` with the result, or `error` with the same status, code and detail the HTTP API answers
with. The caller owns the task: cancelling it (the client went away) cancels the attempt, which
stops the job on the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from sdxlpool.errors import RequestError
from sdxlpool.gateway import events
from sdxlpool.gateway.events import EventSink

__all__ = ["Generation", "follow"]

log = logging.getLogger(__name__)


class Generation:
    """A generation started in the background with an event queue, stopped by `cancel`."""

    def __init__(self, start: Callable[[EventSink], Awaitable[dict[str, Any]]]) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Future[dict[str, Any]] = asyncio.ensure_future(start(self.queue.put_nowait))

    def events(self) -> AsyncIterator[dict[str, Any]]:
        return follow(self.task, self.queue)

    async def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task


async def follow(task: asyncio.Future[dict[str, Any]], queue: asyncio.Queue[dict[str, Any]]
                 ) -> AsyncIterator[dict[str, Any]]:
    while not task.done():
        getter = asyncio.ensure_future(queue.get())
        done, _ = await asyncio.wait({task, getter}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            yield getter.result()
        else:
            getter.cancel()
    while not queue.empty():
        yield queue.get_nowait()
    if task.cancelled():
        yield {"event": "error", "status": 499, "error": "cancelled", "detail": "cancelled by the client"}
        return
    try:
        yield events.done(task.result())
    except RequestError as exc:
        yield events.error(exc)
    except Exception as exc:  # a bug: logged with its traceback, reported like the HTTP API's 500
        log.error("generation failed", exc_info=exc)
        yield {"event": "error", "status": 500, "error": "internal", "detail": f"{type(exc).__name__}: {exc}"}
