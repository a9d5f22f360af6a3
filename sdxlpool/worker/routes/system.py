"""A1111's other list and status routes, in A1111's shapes, with what this worker really has.

    GET  /face-restorers       []: no GFPGAN/CodeFormer weights or code here
    GET  /realesrgan-models    the worker's model upscalers that are Real-ESRGAN
    GET  /scripts              {"txt2img": [], "img2img": []}: no A1111 scripts run here
    GET  /script-info          []
    GET  /extensions           []: no A1111 extensions are installed
    GET  /memory               {"ram": ..., "cuda": ...} (sdxlpool._memory, sdxlpool.worker.memory)
    GET  /cmd-flags            this worker's settings, flag name -> value
    POST /refresh-checkpoints  null: nothing to re-list (see the route)

A1111's server-kill, server-restart and server-stop stay absent (404): a worker's life is its
supervisor's (Kubernetes, `sdxlpool up`), never an API caller's. /hypernetworks, /upscalers and
/latent-upscale-modes are in `catalog`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from sdxlpool._memory import ram_usage
from sdxlpool.worker.deps import StateDep
from sdxlpool.worker.memory import cuda_memory
from sdxlpool.worker.upscalers import available_upscalers

router = APIRouter(prefix="/sdapi/v1", tags=["system"])


@router.get("/face-restorers")
def face_restorers() -> list[dict[str, Any]]:
    """None: A1111's face restorers (GFPGAN, CodeFormer; entries `{name, cmd_dir}`) need their own
    weights and code, which this worker neither ships nor loads, so `restore_faces` is not applied."""
    return []


@router.get("/realesrgan-models")
async def realesrgan_models(state: StateDep) -> list[dict[str, Any]]:
    """A1111's Real-ESRGAN models (`{name, path, scale}`): the model upscalers of --upscaler-dir
    whose file names say ESRGAN (A1111 lists its Real-ESRGAN family by name too); empty without any."""
    entries = await asyncio.to_thread(available_upscalers, state.settings)
    return [{"name": entry.name, "path": str(entry.path), "scale": int(entry.scale)}
            for entry in entries
            if entry.kind == "model" and entry.path is not None and "esrgan" in entry.path.name.lower()]


@router.get("/scripts")
def scripts() -> dict[str, list[str]]:
    """None: A1111's script names per tab are `{"txt2img": [], "img2img": []}` here (no A1111
    scripts run; `script_name` is not applied)."""
    return {"txt2img": [], "img2img": []}


@router.get("/script-info")
def script_info() -> list[dict[str, Any]]:
    """None: A1111's script descriptions (`{name, is_alwayson, is_img2img, args}`), as /scripts."""
    return []


@router.get("/extensions")
def extensions() -> list[dict[str, Any]]:
    """None: no A1111 extension is installed here (entries `{name, remote, branch, commit_hash,
    commit_date, version, enabled}`); LoRA and styles, which come with A1111's built-in extensions, are built in."""
    return []


@router.get("/memory")
def memory(state: StateDep) -> dict[str, Any]:
    """A1111's memory report: `ram` of this process (used: resident, total: the machine's, free:
    the difference) and `cuda` of the device (system free/used/total; torch's active, allocated,
    reserved, inactive {current, peak}; events {retries, oom}), `{"error": "unavailable"}`
    without CUDA (also while the model loads: the device is chosen then)."""
    return {"ram": ram_usage(), "cuda": cuda_memory(state.engine.device)}


@router.get("/cmd-flags")
def cmd_flags(state: StateDep) -> dict[str, Any]:
    """The worker's settings as A1111 gives its command-line flags: flag name (`--lora-dir` is
    `lora_dir`) -> value, from flags and SDXLPOOL_* variables alike."""
    return state.settings.model_dump(mode="json")


@router.post("/refresh-checkpoints")
def refresh_checkpoints() -> None:
    """Nothing to re-list; null, as A1111 answers. A1111 re-reads its checkpoint folder here; this
    worker loads every checkpoint of --model at start and lists exactly those (a listed one is
    switched to at once), so a new checkpoint is a new --model: a restart (a rolling update in a pool)."""
