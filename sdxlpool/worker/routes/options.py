"""GET/POST /sdapi/v1/options (switching sd_model_checkpoint among the loaded checkpoints)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from sdxlpool.worker.deps import WorkerDep

router = APIRouter(prefix="/sdapi/v1", tags=["options"])


@router.get("/options")
def get_options(worker: WorkerDep) -> dict[str, Any]:
    return worker.get_options()


@router.post("/options")
def set_options(worker: WorkerDep, values: Annotated[dict[str, Any], Body()]) -> None:
    worker.set_options(values)
