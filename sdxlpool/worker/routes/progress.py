"""GET /sdapi/v1/progress and POST /sdapi/v1/interrupt."""

from __future__ import annotations

from fastapi import APIRouter

from sdxlpool.api.a1111 import ProgressResponse
from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["progress"])


@router.get("/progress", response_model=ProgressResponse)
async def progress(worker: WorkerDep, skip_current_image: bool = False) -> ProgressResponse:
    return await worker.progress(skip_current_image=skip_current_image)


@router.post("/interrupt")
def interrupt(worker: WorkerDep) -> dict[str, bool]:
    """Stop the running job at its next step; it returns the image it has so far."""
    return {"interrupted": worker.interrupt()}
