"""POST /sdapi/v1/txt2img and /img2img; `X-SDXL-Strict: 1` or `0` sets strict mode for the request
(api/strict.py)."""

from __future__ import annotations

from fastapi import APIRouter, Header, Request

from sdxlpool._http import until_disconnected
from sdxlpool.api.a1111 import Img2ImgRequest, Img2ImgResponse, Txt2ImgRequest, Txt2ImgResponse
from sdxlpool.api.strict import strict_from_header
from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["generation"])


@router.post("/txt2img", response_model=Txt2ImgResponse)
async def txt2img(body: Txt2ImgRequest, worker: WorkerDep, request: Request,
                  x_sdxl_strict: str | None = Header(default=None)) -> Txt2ImgResponse:
    strict = strict_from_header(x_sdxl_strict, worker.settings.strict)
    return await until_disconnected(request, worker.txt2img(body, strict=strict))


@router.post("/img2img", response_model=Img2ImgResponse)
async def img2img(body: Img2ImgRequest, worker: WorkerDep, request: Request,
                  x_sdxl_strict: str | None = Header(default=None)) -> Img2ImgResponse:
    strict = strict_from_header(x_sdxl_strict, worker.settings.strict)
    return await until_disconnected(request, worker.img2img(body, strict=strict))
