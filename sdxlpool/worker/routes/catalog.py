"""What this worker offers: samplers, schedulers, checkpoints, and A1111's other list endpoints."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from sdxlpool.api.generation import LATENT_UPSCALE_MODES
from sdxlpool.worker.deps import StateDep, WorkerDep
from sdxlpool.worker.samplers import SAMPLERS, SCHEDULES
from sdxlpool.worker.upscalers import available_upscalers

router = APIRouter(prefix="/sdapi/v1", tags=["catalog"])


@router.get("/samplers")
def samplers(state: StateDep) -> list[dict[str, Any]]:
    """A1111's sampler list; `options.schedulers` names the schedule types each one supports."""
    return [
        {
            "name": s.name,
            "aliases": list(s.aliases),
            "options": {
                **({"uses_ensd": "True"} if s.ancestral else {}),
                **({"brownian_noise": "True"} if s.brownian else {}),
                "schedulers": [schedule.name for schedule in state.engine.schedules(s)],
            },
        }
        for s in SAMPLERS
    ]


@router.get("/schedulers")
def schedulers() -> list[dict[str, Any]]:
    return [
        {"name": s.name, "label": s.label, "aliases": None, "default_rho": -1, "need_inner_model": False}
        for s in SCHEDULES
    ]


@router.get("/sd-models")
def sd_models(worker: WorkerDep) -> list[dict[str, Any]]:
    return [checkpoint.as_a1111() for checkpoint in worker.checkpoints.all]


@router.get("/loras")
def loras(worker: WorkerDep) -> list[dict[str, Any]]:
    """A1111's list of LoRA files in --lora-dir: name, alias (ss_output_name), path, metadata (ss_* header)."""
    return [entry.as_a1111() for entry in worker.loras.all]


@router.post("/refresh-loras")
async def refresh_loras(worker: WorkerDep) -> None:
    """Re-scan --lora-dir (headers only); A1111 answers null."""
    await asyncio.to_thread(worker.loras.refresh)


@router.get("/sd-vae")
def sd_vae(worker: WorkerDep) -> list[dict[str, Any]]:
    """The VAE files of --vae-dir, selectable by the sd_vae option (also "Automatic" and "None")."""
    return [entry.as_a1111() for entry in worker.vaes.entries()]


@router.post("/refresh-vae")
def refresh_vae() -> None:
    """A1111 re-scans its VAE folder here; this worker scans it on every use, so there is nothing to do."""


@router.get("/prompt-styles")
def prompt_styles(worker: WorkerDep) -> list[dict[str, Any]]:
    """The styles of --styles (A1111's styles.csv), as the file is now."""
    return [style.as_a1111() for style in worker.styles.current().values()]


@router.get("/upscalers")
async def upscalers(state: StateDep) -> list[dict[str, Any]]:
    """The upscalers this worker can run (hires fix's hr_upscaler, extras' upscaler_1/2): None,
    Lanczos, Nearest, and the model files of --upscaler-dir when spandrel is installed. Answers
    while the model is still loading (clients probe it on connect)."""
    entries = await asyncio.to_thread(available_upscalers, state.settings)
    return [entry.as_a1111() for entry in entries]


@router.get("/latent-upscale-modes")
def latent_upscale_modes() -> list[dict[str, Any]]:
    """Hires fix's latent upscalers (hr_upscaler), as A1111 lists them."""
    return [{"name": name} for name in LATENT_UPSCALE_MODES]


# A1111 clients probe this on connect; this worker has no hypernetworks to list.
@router.get("/hypernetworks")
def empty_list() -> list[Any]:
    return []


@router.get("/embeddings")
def embeddings(worker: WorkerDep) -> dict[str, Any]:
    """The textual-inversion embeddings loaded, and those skipped (not for this model), as A1111 lists them.

    Each: {step, sd_checkpoint, sd_checkpoint_name, shape (widths together), vectors}.
    """
    return worker.embeddings.as_a1111()
