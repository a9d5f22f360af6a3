"""A1111's per-client state routes, answered per caller (an API key's name, else the client address).

    GET  /sdapi/v1/progress            the caller's own running job (caller_tasks.py)
    POST /internal/progress            one task of the caller's, by its id_task (force_task_id)
    POST /sdapi/v1/interrupt, /skip    stop the caller's own running job(s), never another's
    GET  /sdapi/v1/options             the pool's options with the caller's own laid over them
    POST /sdapi/v1/options             store options for the caller's next requests (caller_options.py)
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field

from sdxlpool._http import error_responses
from sdxlpool.api.a1111 import ProgressResponse
from sdxlpool.gateway.api_keys import presented_key
from sdxlpool.gateway.deps import GatewayDep

router = APIRouter(tags=["caller"])


def _identity(gateway: GatewayDep, request: Request) -> str:
    client = request.client.host if request.client else ""
    return gateway.caller(presented_key(request.headers, request.query_params), client).identity


@router.get("/sdapi/v1/progress", response_model=ProgressResponse, responses=error_responses(401))
async def progress(gateway: GatewayDep, request: Request, skip_current_image: bool = False) -> dict[str, Any]:
    """The caller's running job as its worker reports it (`state.job` is the request's id_task);
    progress 0 while its requests wait, and an idle answer when it has none. The live preview
    (`current_image`) comes along unless `skip_current_image=true`."""
    return await gateway.caller_progress(_identity(gateway, request), current_image=not skip_current_image)


class InternalProgressRequest(BaseModel):
    """A1111's ProgressRequest (modules/progress.py)."""

    id_task: str | None = Field(None, description="the task's id: the request's force_task_id")
    id_live_preview: int = Field(-1, description="id of the last live preview received")
    live_preview: bool = Field(True, description="send the live preview when there is a new one")


class InternalProgressResponse(BaseModel):
    """A1111's internal progress answer."""

    active: bool
    queued: bool
    completed: bool
    progress: float | None = None
    eta: float | None = None
    live_preview: str | None = None
    id_live_preview: int | None = None
    textinfo: str | None = None


@router.post("/internal/progress", response_model=InternalProgressResponse, responses=error_responses(401))
async def internal_progress(gateway: GatewayDep, request: Request, body: InternalProgressRequest) -> dict[str, Any]:
    """The caller's task `id_task`: running (`active`, with its progress and live preview), waiting
    (`queued`), or recently finished (`completed`)."""
    return await gateway.caller_internal_progress(
        _identity(gateway, request), body.id_task or "", id_live_preview=body.id_live_preview,
        live_preview=body.live_preview)


@router.post("/sdapi/v1/interrupt", responses=error_responses(401))
async def interrupt(gateway: GatewayDep, request: Request) -> dict[str, bool]:
    """Stop the caller's running job(s) at the next step (each answers with what it has so far);
    other callers' jobs go on. `interrupted`: whether one was running."""
    return {"interrupted": await gateway.stop_caller_jobs(_identity(gateway, request))}


@router.post("/sdapi/v1/skip", responses=error_responses(401))
async def skip(gateway: GatewayDep, request: Request) -> dict[str, bool]:
    """End the current batch of the caller's running job(s); each goes on with its next batch."""
    return {"skipped": await gateway.stop_caller_jobs(_identity(gateway, request), skip=True)}


@router.get("/sdapi/v1/options", responses=error_responses(401, 503))
async def get_options(gateway: GatewayDep, request: Request) -> dict[str, Any]:
    """The pool's options (a worker's), with the values this caller set laid over them."""
    return await gateway.caller_options_view(_identity(gateway, request))


@router.post("/sdapi/v1/options", responses=error_responses(401, 422, 503))
async def set_options(gateway: GatewayDep, request: Request,
                      values: Annotated[dict[str, Any], Body()]) -> None:
    """Keep `sd_model_checkpoint`, `sd_vae`, `CLIP_stop_at_last_layers` (and the other options the
    workers apply per request) for this caller's next requests; no worker's options change.
    Checked first: an unknown checkpoint or VAE is a 422 naming the key."""
    await gateway.set_caller_options(_identity(gateway, request), values)
