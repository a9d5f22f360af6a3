"""What every sdxlpool HTTP service shares: errors answered as `{"error": code, "detail": text}`.

The worker and the gateway install the same handlers, so a client sees one error shape whichever
it talks to: sdxlpool's own request errors with their status (503s with Retry-After), validation
failures as 422 naming the field, undecodable bodies as 422, and anything unexpected as a logged
500 with a JSON body, never a bare traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sdxlpool.errors import QueueFull, RequestError

__all__ = ["install_error_handlers", "until_disconnected"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_DISCONNECT_POLL_SECONDS = 0.25


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestError, _request_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)


async def _request_error(_request: Request, exc: RequestError) -> JSONResponse:
    retry_after = getattr(exc, "retry_after", None)
    headers = dict(getattr(exc, "headers", None) or {})  # e.g. WWW-Authenticate on a 401
    if isinstance(exc, QueueFull) or retry_after:
        headers["Retry-After"] = str(retry_after)
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


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away first: a worker then drops the queued
    job or interrupts the running one, the gateway the attempt (and so the job on its worker),
    instead of spending GPU time on an image nobody will receive."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise asyncio.CancelledError("client disconnected")
