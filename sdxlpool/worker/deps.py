"""FastAPI dependencies, defined once as `Annotated` aliases so route signatures stay short."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sdxlpool.errors import RequestError
from sdxlpool.worker.service import WorkerService
from sdxlpool.worker.state import WorkerState

__all__ = ["StateDep", "WorkerDep", "NotReady"]


class NotReady(RequestError):
    status = 503
    code = "not_ready"


# async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
async def get_state(request: Request) -> WorkerState:
    return request.app.state.worker


async def get_worker(state: Annotated[WorkerState, Depends(get_state)]) -> WorkerService:
    if state.service is None:
        raise NotReady("the model is still loading; see /readyz")
    return state.service


StateDep = Annotated[WorkerState, Depends(get_state)]
WorkerDep = Annotated[WorkerService, Depends(get_worker)]
