"""`create_app(settings)`: the worker's FastAPI application.

Assembly only: lifespan (start loading, close the queue), error handlers that turn sdxlpool errors
and validation failures into A1111-shaped JSON (`{"error": code, "detail": text}`), and routers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sdxlpool.errors import QueueFull, RequestError
from sdxlpool.worker.routes import catalog, health, options, progress, txt2img
from sdxlpool.worker.settings import WorkerSettings
from sdxlpool.worker.state import WorkerState

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(settings: WorkerSettings, *, on_fatal: Callable[[BaseException], None] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.worker = WorkerState(settings, on_fatal=on_fatal)
        app.state.worker.start()
        try:
            yield
        finally:
            await app.state.worker.close()

    app = FastAPI(title="sdxlpool worker", version="0.1.0", lifespan=lifespan,
                  description="AUTOMATIC1111-compatible SDXL API on diffusers")
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    for module in (txt2img, options, catalog, progress, health):
        app.include_router(module.router)
    return app


async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, QueueFull) else None
    return JSONResponse({"error": exc.code, "detail": exc.detail}, status_code=exc.status, headers=headers)


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI's "error parsing the body": undecodable bytes, like malformed JSON
        return JSONResponse({"error": "invalid_request", "detail": "body: not valid UTF-8 JSON"}, status_code=422)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    # A bug or a device failure (e.g. CUDA out of memory): logged with its traceback, answered as JSON.
    log.error("request failed", exc_info=exc)
    return JSONResponse({"error": "internal", "detail": f"{type(exc).__name__}: {exc}"}, status_code=500)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"field": _field_path(err.get("loc", ())), "message": err.get("msg", "invalid")}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}"
    return JSONResponse({"error": "invalid_request", "detail": detail, "errors": errors}, status_code=422)


def _field_path(loc: tuple[object, ...]) -> str:
    # FastAPI prefixes body fields with "body"; the client knows them by their own names.
    parts = [str(p) for p in loc[1:]] if loc and loc[0] == "body" and len(loc) > 1 else [str(p) for p in loc]
    return ".".join(parts) or "body"
