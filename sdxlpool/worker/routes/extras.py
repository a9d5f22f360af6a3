"""POST /sdapi/v1/extra-single-image, /extra-batch-images (upscaling, as A1111's Extras tab) and
/png-info (an image's infotext read back); `X-SDXL-Strict` as for txt2img (face restoration asked
for is then a 422, since this worker has no face-restoration weights)."""

from __future__ import annotations

from fastapi import APIRouter, Header

from sdxlpool.api.a1111 import (
    ExtrasBatchImagesRequest,
    ExtrasBatchImagesResponse,
    ExtrasSingleImageRequest,
    ExtrasSingleImageResponse,
    PngInfoRequest,
    PngInfoResponse,
)
from sdxlpool.api.strict import strict_from_header
from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["extras"])


@router.post("/extra-single-image", response_model=ExtrasSingleImageResponse)
async def extra_single_image(body: ExtrasSingleImageRequest, worker: WorkerDep,
                             x_sdxl_strict: str | None = Header(default=None)) -> ExtrasSingleImageResponse:
    strict = strict_from_header(x_sdxl_strict, worker.settings.strict)
    images, html = await worker.extras(body, strict=strict)
    return ExtrasSingleImageResponse(html_info=html, image=images[0])


@router.post("/extra-batch-images", response_model=ExtrasBatchImagesResponse)
async def extra_batch_images(body: ExtrasBatchImagesRequest, worker: WorkerDep,
                             x_sdxl_strict: str | None = Header(default=None)) -> ExtrasBatchImagesResponse:
    strict = strict_from_header(x_sdxl_strict, worker.settings.strict)
    images, html = await worker.extras(body, strict=strict)
    return ExtrasBatchImagesResponse(html_info=html, images=images)


@router.post("/png-info", response_model=PngInfoResponse)
async def png_info(body: PngInfoRequest, worker: WorkerDep) -> PngInfoResponse:
    return PngInfoResponse(**await worker.png_info(body))
