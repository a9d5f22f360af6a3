"""POST /sdapi/v1/txt2img."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, Request

from sdxlpool.api.a1111 import Txt2ImgRequest, Txt2ImgResponse
from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["txt2img"])
T = TypeVar("T")
_DISCONNECT_POLL_SECONDS = 0.25


@router.post("/txt2img", response_model=Txt2ImgResponse)
async def txt2img(body: Txt2ImgRequest, worker: WorkerDep, request: Request) -> Txt2ImgResponse:
    return await _unless_disconnected(request, worker.txt2img(body))


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Run `work`, cancelling it if the client goes away (its queued job is dropped, its running
    job interrupted) instead of spending GPU time on an image nobody will receive."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise asyncio.CancelledError("client disconnected")
