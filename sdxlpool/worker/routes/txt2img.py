"""POST /sdapi/v1/txt2img."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sdxlpool._http import until_disconnected
from sdxlpool.api.a1111 import Txt2ImgRequest, Txt2ImgResponse
from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["txt2img"])


@router.post("/txt2img", response_model=Txt2ImgResponse)
async def txt2img(body: Txt2ImgRequest, worker: WorkerDep, request: Request) -> Txt2ImgResponse:
    return await until_disconnected(request, worker.txt2img(body))
