"""`create_sim_app(settings)`: the real worker's FastAPI app with the simulated engine."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from sdxlpool.sim._engine import SimEngine
from sdxlpool.sim._settings import SimSettings
from sdxlpool.worker.app import create_app

__all__ = ["create_sim_app"]


def create_sim_app(settings: SimSettings, *, on_fatal: Callable[[BaseException], None] | None = None) -> FastAPI:
    app = create_app(settings, on_fatal=on_fatal, engine=SimEngine(settings))
    app.title = "sdxlpool sim-worker"
    app.description = "The worker's AUTOMATIC1111-compatible API and metrics, with a timing model instead of a GPU"
    return app
