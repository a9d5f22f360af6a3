"""`create_app(settings)`: the gateway's FastAPI application (assembly only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from sdxlpool._http import install_error_handlers
from sdxlpool.gateway.routes import generate, health, pool, txt2img, web
from sdxlpool.gateway.service import GatewayService
from sdxlpool.gateway.settings import GatewaySettings

__all__ = ["create_app"]


def create_app(settings: GatewaySettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.gateway = GatewayService(settings)
        await app.state.gateway.start()
        try:
            yield
        finally:
            await app.state.gateway.close()

    app = FastAPI(title="sdxlpool gateway", version="0.1.0", lifespan=lifespan,
                  description="One A1111-compatible endpoint in front of a pool of SDXL workers")
    install_error_handlers(app)
    for module in (txt2img, generate, pool, health, web):
        app.include_router(module.router)
    return app
