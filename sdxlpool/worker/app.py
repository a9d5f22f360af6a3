"""`create_app(settings)`: the worker's FastAPI application.

Assembly only: lifespan (start loading, close the queue), the shared request limits
(`sdxlpool._limits`: body size cap and read timeout), the shared error handlers (`sdxlpool._http`:
A1111-shaped JSON errors, declared in the OpenAPI document too), and routers. `engine` swaps what
makes the images (default: diffusers; `sdxlpool.sim` passes its simulated engine) and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sdxlpool import __version__
from sdxlpool._http import error_responses, install_error_handlers
from sdxlpool._limits import RequestLimits
from sdxlpool.worker.engine import Engine
from sdxlpool.worker.routes import catalog, extras, health, options, progress, system, txt2img
from sdxlpool.worker.settings import WorkerSettings
from sdxlpool.worker.state import WorkerState

__all__ = ["create_app"]


def create_app(
    settings: WorkerSettings, *, on_fatal: Callable[[BaseException], None] | None = None,
    engine: Engine | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.worker = WorkerState(settings, on_fatal=on_fatal, engine=engine)
        app.state.worker.start()
        try:
            yield
        finally:
            await app.state.worker.close()

    app = FastAPI(title="sdxlpool worker", version=__version__, lifespan=lifespan,
                  description="AUTOMATIC1111-compatible SDXL API on diffusers")
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout)
    install_error_handlers(app)
    for module in (txt2img, extras, options, catalog, system, progress, health):
        app.include_router(module.router, responses=error_responses(404, 405, 408, 413, 422, 503))
    return app
