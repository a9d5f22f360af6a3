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
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from sdxlpool.errors import QueueFull, RequestError

__all__ = ["install_error_handlers", "until_disconnected", "ErrorBody", "error_responses"]

log = logging.getLogger(__name__)
T = TypeVar("T")
_DISCONNECT_POLL_SECONDS = 0.25
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer: `{"error": code, "detail": text}`; a 422 also lists `errors` per field."""

    model_config = ConfigDict(extra="allow")

    error: str
    detail: str
    errors: list[FieldError] | None = None


_ERROR_MEANINGS = {
    401: "an API key is required and none, or an unknown one, was given",
    404: "unknown path, sampler, scheduler or checkpoint",
    405: "method not allowed",
    408: "the request body stopped arriving (body_timeout)",
    413: "the request body is over the size cap (body_too_large)",
    422: "invalid input: `detail` names the field, `errors` lists every one",
    429: "saturated or rate limited; see Retry-After",
    502: "every worker tried failed the request (all_attempts_failed)",
    503: "not ready, queue full or no allowed backend up; see Retry-After",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI `responses=` declaring the JSON error shape for these statuses (all when none given)."""
    return {status: {"model": ErrorBody, "description": _ERROR_MEANINGS[status]}
            for status in statuses or tuple(_ERROR_MEANINGS)}


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
    body: dict[str, object] = {"error": exc.code, "detail": exc.detail}
    field_errors = getattr(exc, "field_errors", None)  # one entry per field, e.g. strict mode's refusals
    if field_errors:
        body["errors"] = field_errors
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400:  # FastAPI's "error parsing the body": undecodable bytes, like malformed JSON
        return JSONResponse({"error": "invalid_request", "detail": "body: not valid UTF-8 JSON"}, status_code=422)
    code = getattr(exc, "code", None) or {404: "not_found", 405: "method_not_allowed", 408: "body_timeout",
                                           413: "body_too_large"}.get(exc.status_code, "http_error")
    headers = dict(getattr(exc, "headers", None) or {})
    if exc.status_code == 405:  # Starlette names the first route's methods only; a path may have several
        headers["Allow"] = _allowed_methods(request)
    return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code, headers=headers)


def _allowed_methods(request: Request) -> str:
    routes = request.app.router.routes
    allowed = [method for method in _METHODS
               if any(route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes)]
    return ", ".join(allowed)


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    # A bug or a device failure (e.g. CUDA out of memory): logged with its traceback, answered as JSON.
    log.error("request failed", exc_info=exc)
    return JSONResponse({"error": "internal", "detail": f"{type(exc).__name__}: {exc}"}, status_code=500)


async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [_field_error(err) for err in exc.errors()]
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    detail = f"{first['field']}: {first['message']}"
    return JSONResponse({"error": "invalid_request", "detail": detail, "errors": errors}, status_code=422)


def _field_error(err: dict) -> dict[str, str]:
    if err.get("type") == "json_invalid":  # its loc is ("body", character offset), not a field
        reason = (err.get("ctx") or {}).get("error", "JSON decode error")
        return {"field": "body", "message": f"not valid JSON: {reason} at character {err['loc'][-1]}"}
    return {"field": _field_path(err.get("loc", ())), "message": err.get("msg", "invalid")}


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
