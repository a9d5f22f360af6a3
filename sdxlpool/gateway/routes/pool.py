"""GET /v1/backends (live state of every backend) and the pool-wide A1111 catalog (see `..catalog`):
each list route joins every available worker's answer, each refresh reaches every worker."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sdxlpool._http import error_responses
from sdxlpool._memory import ram_usage
from sdxlpool.gateway.catalog import (
    Reply,
    pool_memory,
    refresh_outcome,
    union_by,
    union_embeddings,
    union_scripts,
)
from sdxlpool.gateway.deps import GatewayDep
from sdxlpool.gateway.forward import NoBackend

router = APIRouter(tags=["pool"])
REFRESH_TIMEOUT = 60.0
"""Seconds each worker has to re-scan its fine-tune folders (reading every file's header)."""


@router.get("/v1/backends")
def backends(gateway: GatewayDep) -> dict[str, Any]:
    now = time.monotonic()
    out = []
    for state in gateway.pool.states():
        b, m = state.backend, state.metrics
        out.append({
            "name": b.name, "url": b.url, "gpu": b.gpu, "provider": b.provider, "location": b.location,
            "type": b.kind, "pricePerHour": b.price_per_hour,
            "available": state.available(now),
            "ready": bool(m and m.ready) if b.kind == "sdxlpool" else None,
            "scrapeAgeSeconds": round(now - state.scraped_at, 3) if state.scraped_at is not None else None,
            "queueDepth": m.queue_depth if m else None,
            "inflight": m.inflight if m else None,
            "pendingSteps": m.pending_steps if m else None,
            "stepSeconds": m.step_seconds if m else None,
            "unseenSteps": round(state.unseen_cost(now), 4),
            "lorasLoaded": sorted(m.loras) if m else None,  # names and aliases (sdxl_worker_lora_loaded)
            "batchMax": m.batch_max if m else None,  # sdxl_worker_batch_max (1 when the worker does not say)
        })
    return {"backends": out}


@router.get("/sdapi/v1/samplers")
async def samplers(gateway: GatewayDep) -> Any:
    return await gateway.any_backend_get("/sdapi/v1/samplers")


@router.get("/sdapi/v1/schedulers")
async def schedulers(gateway: GatewayDep) -> Any:
    return await gateway.any_backend_get("/sdapi/v1/schedulers")


async def _joined(gateway: GatewayDep, path: str, join: Callable[[Sequence[Reply]], Any]) -> Any:
    """Every available worker's answer to GET `path`, joined; 503 when none answers."""
    answers = [reply for reply in await gateway.each_backend("GET", path) if reply.ok]
    if not answers:
        raise NoBackend("no worker answered")
    return join(answers)


# A1111's list routes answered from the pool: path -> (the key entries are joined by, what they are).
_LISTS: dict[str, tuple[tuple[str, ...], str]] = {
    "sd-models": (("title",), "The checkpoints the workers offer (title, model_name, hash, sha256, filename)"),
    "loras": (("name",), "The LoRAs the workers offer (A1111's list: name, alias, path, metadata)"),
    "sd-vae": (("model_name",), "The VAEs the workers offer (model_name, filename)"),
    "prompt-styles": (("name",), "The styles the workers offer (name, prompt, negative_prompt)"),
    "upscalers": (("name",), "The upscalers the workers offer (name, model_name, model_path, model_url, scale)"),
    "latent-upscale-modes": (("name",), "The latent upscale modes of hires fix the workers offer (name)"),
    "realesrgan-models": (("name",), "The Real-ESRGAN models the workers offer (name, path, scale)"),
    "face-restorers": (("name",), "The face restorers the workers offer (name, cmd_dir)"),
    "hypernetworks": (("name",), "The hypernetworks the workers offer (name, path)"),
    "script-info": (("name", "is_img2img"), "The scripts' descriptions (name, is_alwayson, is_img2img, args)"),
    "extensions": (("name",), "The A1111 extensions the workers have (name, remote, branch, commit_hash, ...)"),
}


def _list_route(path: str, keys: tuple[str, ...], what: str) -> None:
    async def route(gateway: GatewayDep) -> Any:
        return await _joined(gateway, path, union_by(*keys))

    route.__name__ = route.__qualname__ = path.rsplit("/", 1)[-1].replace("-", "_")
    route.__doc__ = (f"{what}, joined by {' and '.join(keys)}; each entry's `sdxlpool.gpus` names the GPU "
                     "models of the workers that listed it.")
    router.add_api_route(path, route, methods=["GET"], responses=error_responses(503))


for _name, (_keys, _what) in _LISTS.items():
    _list_route(f"/sdapi/v1/{_name}", _keys, _what)


@router.get("/sdapi/v1/scripts", responses=error_responses(503))
async def scripts(gateway: GatewayDep) -> Any:
    """The workers' A1111 script names, txt2img and img2img each joined."""
    return await _joined(gateway, "/sdapi/v1/scripts", union_scripts)


@router.get("/sdapi/v1/embeddings", responses=error_responses(503))
async def embeddings(gateway: GatewayDep) -> Any:
    """The workers' textual-inversion embeddings: loaded by any worker is loaded; each entry's
    `sdxlpool.gpus` names the GPU models of the workers that loaded (or skipped) it."""
    return await _joined(gateway, "/sdapi/v1/embeddings", union_embeddings)


@router.get("/sdapi/v1/memory")
async def memory(gateway: GatewayDep) -> dict[str, Any]:
    """A1111's memory report for the pool: `ram` of the gateway process (it has no `cuda`), and
    `sdxlpool.workers`: each worker's own report (its RAM and GPU), or `{"error": why}`."""
    replies = await gateway.each_backend("GET", "/sdapi/v1/memory", available_only=False)
    return pool_memory(ram_usage(), replies)


@router.get("/sdapi/v1/cmd-flags")
def cmd_flags(gateway: GatewayDep) -> dict[str, Any]:
    """The gateway's settings as A1111 gives its command-line flags: flag name -> value (each
    worker's are on the worker's /sdapi/v1/cmd-flags)."""
    return gateway.settings.model_dump(mode="json")


# A1111's refresh routes: sent to every worker (available or not), answered once all replied.
_REFRESHES = {"refresh-loras": ("LoRA folder", "LoRAs"), "refresh-vae": ("VAE folder", "VAEs"),
              "refresh-checkpoints": ("checkpoint list (the ones it loaded)", "checkpoints")}


def _refresh_route(path: str, folder: str, what: str) -> None:
    async def route(gateway: GatewayDep) -> JSONResponse:
        replies = await gateway.each_backend("POST", path, timeout=REFRESH_TIMEOUT, available_only=False)
        if not replies:
            raise NoBackend("the pool has no workers")
        status, body = refresh_outcome(replies, what)
        return JSONResponse(body, status_code=status)

    route.__name__ = route.__qualname__ = path.rsplit("/", 1)[-1].replace("-", "_")
    route.__doc__ = (f"Every worker (available or not) re-reads its {folder}; answered when all have replied, "
                     "502 naming each worker that did not refresh, and why, in `failed`.")
    router.add_api_route(path, route, methods=["POST"], responses={
        200: {"description": f"every worker re-read its {folder}: `refreshed` names them"},
        **error_responses(502, 503)})


for _name, (_folder, _what) in _REFRESHES.items():
    _refresh_route(f"/sdapi/v1/{_name}", _folder, _what)
