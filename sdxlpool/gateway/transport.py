"""How the attempt loop talks to one worker: the `WorkerTransport` protocol and its HTTP class.

The loop (forward.py) needs three things from a worker, and nothing else:

    send(backend, path, body, timeout[, headers]) -> (status, body bytes)     the request itself
                                    (path: /sdapi/v1/txt2img, img2img, the extras, png-info)
    read_progress(backend, timeout)       -> /progress answer, or None when there is no answer
    interrupt(backend[, task_id])                                   stop its running job

and, for the per-caller A1111 routes (caller_tasks.py), `skip(backend[, task_id])`: end the
running job's current batch. With `task_id`, an sdxlpool worker acts only when its running job
has that name (`?id_task=`); a plain A1111 server ignores the parameter.

`HttpWorkerTransport` is the real one: aiohttp for the request's POST, whose answer is megabytes
(`_bulk.py`: read in one piece, never decoded here), httpx for the small /progress and /interrupt.
Tests give the loop an in-memory fake instead (tests/gateway/test_forward_seam.py), the way httpx
takes a `MockTransport`.

A send that gets no answer raises `TransportTimeout` (the attempt timeout passed) or
`TransportFailure` (refused, reset, closed mid-answer); any answer, 5xx included, is returned.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from sdxlpool.errors import UpstreamError
from sdxlpool.gateway._bulk import BulkClient, BulkTimeout, BulkTransportError
from sdxlpool.gateway.backends import Backend

__all__ = ["WorkerTransport", "HttpWorkerTransport", "TransportError", "TransportTimeout", "TransportFailure"]

PROGRESS_PATH = "/sdapi/v1/progress"
INTERRUPT_PATH = "/sdapi/v1/interrupt"
SKIP_PATH = "/sdapi/v1/skip"
_INTERRUPT_TIMEOUT_SECONDS = 2.0


class TransportError(UpstreamError):
    """The worker gave no answer to a request."""


class TransportTimeout(TransportError):
    """No answer within the attempt timeout."""


class TransportFailure(TransportError):
    """Refused, reset or closed before the whole answer arrived."""


class WorkerTransport(Protocol):
    async def send(self, backend: Backend, path: str, body: Mapping[str, Any], *, timeout: float,
                   headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """POST `body` (with `headers`, when given) to the worker's `path`; its status and body bytes."""
        ...

    async def read_progress(self, backend: Backend, *, timeout: float, current_image: bool = False,
                            task_id: str | None = None) -> dict[str, Any] | None:
        """The worker's /progress JSON object (without the live preview unless `current_image`);
        None: no answer. `task_id`: an sdxlpool worker describes that running job, which may be
        one member of a batch (`?id_task=`), instead of the oldest running one."""
        ...

    async def interrupt(self, backend: Backend, *, task_id: str | None = None) -> None:
        """Ask the worker to stop the job it runs (only the one named `task_id`, when given); never
        raises (best effort)."""
        ...

    async def skip(self, backend: Backend, *, task_id: str | None = None) -> None:
        """Ask the worker to end its running job's current batch (as `interrupt`); never raises."""
        ...


class HttpWorkerTransport:
    """`client` (httpx) watches and interrupts; `bulk` (aiohttp) sends the requests themselves. Both
    are owned, and closed, by the caller (the gateway service also scrapes with `client`)."""

    def __init__(self, client: httpx.AsyncClient, bulk: BulkClient) -> None:
        self._client = client
        self._bulk = bulk

    async def send(self, backend: Backend, path: str, body: Mapping[str, Any], *, timeout: float,
                   headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        try:
            return await self._bulk.post_json(backend.url + path, body, timeout=timeout, headers=headers)
        except BulkTimeout as exc:
            raise TransportTimeout(str(exc)) from exc
        except BulkTransportError as exc:
            raise TransportFailure(str(exc)) from exc

    async def read_progress(self, backend: Backend, *, timeout: float, current_image: bool = False,
                            task_id: str | None = None) -> dict[str, Any] | None:
        try:
            params = {"skip_current_image": "false" if current_image else "true"}
            if task_id is not None and backend.kind == "sdxlpool":  # A1111 knows no id_task here
                params["id_task"] = task_id
            response = await self._client.get(backend.url + PROGRESS_PATH, params=params, timeout=timeout)
            answer = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None

    async def interrupt(self, backend: Backend, *, task_id: str | None = None) -> None:
        await self._stop(backend, INTERRUPT_PATH, task_id)

    async def skip(self, backend: Backend, *, task_id: str | None = None) -> None:
        await self._stop(backend, SKIP_PATH, task_id)

    async def _stop(self, backend: Backend, path: str, task_id: str | None) -> None:
        params = {"id_task": task_id} if task_id is not None else None
        with contextlib.suppress(httpx.HTTPError):
            await self._client.post(backend.url + path, params=params, timeout=_INTERRUPT_TIMEOUT_SECONDS)
