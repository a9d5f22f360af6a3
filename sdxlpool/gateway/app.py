"""`create_app(settings)`: the gateway's FastAPI application (assembly only).

Middleware: the shared request limits (`sdxlpool._limits`), and CORS only when `cors_origins`
names origins (closed by default: no CORS headers at all, so browsers keep other sites' pages from
reading answers). Errors are the shared JSON shape (`sdxlpool._http`), declared in the OpenAPI
document for every route.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from pydantic import Field

from sdxlpool import __version__
from sdxlpool._http import error_responses, install_error_handlers
from sdxlpool._limits import RequestLimits
from sdxlpool.api.a1111 import Img2ImgRequest, Txt2ImgRequest
from sdxlpool.api.headers import FAST_MODE_HEADER
from sdxlpool.gateway.kinds import KINDS
from sdxlpool.gateway.routes import caller, forwarded, generate, health, pool, web
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

    app = FastAPI(title="sdxlpool gateway", version=__version__, lifespan=lifespan,
                  description="One A1111-compatible endpoint in front of a pool of SDXL workers")
    app.add_middleware(RequestLimits, max_body_bytes=settings.max_body_bytes, body_timeout=settings.body_timeout)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "Authorization", "X-API-Key", "X-SDXL-GPU", "X-SDXL-Strict"],
                           expose_headers=["Retry-After", "X-SDXL-GPU-Model", "X-SDXL-Provider", "X-SDXL-Location",
                                           "X-SDXL-Worker", "X-SDXL-Inference-Seconds", "X-SDXL-Queue-Seconds",
                                           "X-SDXL-Attempts", FAST_MODE_HEADER])
    install_error_handlers(app)
    for module in (forwarded, generate, pool, caller, health, web):
        app.include_router(module.router, responses=error_responses())
    app.openapi = lambda: _openapi_with_bodies(app)  # type: ignore[method-assign]
    return app


_GPUS = Field(None, description="allowed GPU models, preferred first (or X-SDXL-GPU)")


class GatewayTxt2ImgRequest(Txt2ImgRequest):
    """What POST /sdapi/v1/txt2img and /v1/generate take: A1111's txt2img fields plus `gpus`."""

    gpus: list[str] | str | None = _GPUS


class GatewayImg2ImgRequest(Img2ImgRequest):
    """What POST /sdapi/v1/img2img takes (and /v1/generate, with `init_images`): A1111's img2img
    fields plus `gpus`."""

    gpus: list[str] | str | None = _GPUS


def _openapi_with_bodies(app: FastAPI) -> dict[str, Any]:
    """The routes take any JSON object (checked by the gateway, then by the workers; unknown fields
    pass through), so FastAPI documents a bare object; the document names the A1111 fields instead."""
    if app.openapi_schema is None:
        schema = FastAPI.openapi(app)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        bodies: dict[str, Any] = {kind.path: kind.model for kind in KINDS.values()}
        bodies.update({"/sdapi/v1/txt2img": GatewayTxt2ImgRequest, "/sdapi/v1/img2img": GatewayImg2ImgRequest,
                       "/v1/generate": [GatewayTxt2ImgRequest, GatewayImg2ImgRequest]})
        for path, models in bodies.items():
            refs = []
            for model in models if isinstance(models, list) else [models]:
                body = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(body.pop("$defs", {}))
                components[model.__name__] = body
                refs.append({"$ref": f"#/components/schemas/{model.__name__}"})
            content = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]
            content["schema"] = refs[0] if len(refs) == 1 else {"anyOf": refs}
    return app.openapi_schema  # type: ignore[return-value]
