"""GET /sdapi/v1/progress, POST /sdapi/v1/interrupt and POST /sdapi/v1/skip.

`?id_task=NAME` (not in A1111) makes interrupt and skip conditional: they act only when the
running job is the one named NAME (its `force_task_id`), so the gateway stops a caller's own job
and never the next one that started meanwhile. On /progress it picks which running job to describe:
with --batch-max several run at once, and without it /progress describes the batch's oldest.
"""

from __future__ import annotations

from fastapi import APIRouter

from sdxlpool.api.a1111 import ProgressResponse
from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["progress"])


@router.get("/progress", response_model=ProgressResponse)
async def progress(worker: WorkerDep, skip_current_image: bool = False, id_task: str | None = None,
                   ) -> ProgressResponse:
    return await worker.progress(skip_current_image=skip_current_image, task_id=id_task)


@router.post("/interrupt")
def interrupt(worker: WorkerDep, id_task: str | None = None) -> dict[str, bool]:
    """Stop the running job at its next step; it returns the image it has so far."""
    return {"interrupted": worker.interrupt(id_task)}


@router.post("/skip")
def skip(worker: WorkerDep, id_task: str | None = None) -> dict[str, bool]:
    """End the running job's current batch at its next step (that batch's image is made from where it
    got to); the job goes on with its next `n_iter` batch."""
    return {"skipped": worker.skip(id_task)}
