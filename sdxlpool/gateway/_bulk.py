"""The one request on the gateway's hot path: POST a generation (or extras, png-info) to a worker,
read its whole answer.

A worker's answer is megabytes of base64 PNG. Everything else the gateway sends (scrapes,
/progress, /interrupt) is small and goes through httpx; this one goes straight to aiohttp, whose
C parser reads the body, because the ways through httpx each cost milliseconds a request on the
benchmark (docs/benchmarks.md, gateway overhead):

- httpx's own h11 transport parses the body in Python, 64 KiB at a time;
- httpx over aiohttp (httpx-aiohttp) hands the body on in 16 KiB pieces, ~125 of them per answer;
- aiohttp's default 64 KiB read buffer pauses and resumes the socket ~30 times per answer.

So: one aiohttp session whose read buffer holds a whole answer, and one `read()` per request. The
request body is serialised with orjson: an img2img carries megabytes of base64, which the standard
library's encoder scans at ~5 ms per MB and orjson copies at ~0.3 ms (a body orjson refuses, an
integer past 64 bits in an extension's field, falls back to the standard library).
Failures come back as two exceptions the caller tells apart: `BulkTimeout` and `BulkTransportError`
(refused, reset, closed mid-answer), like httpx's TimeoutException and TransportError.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from sdxlpool.errors import UpstreamError

__all__ = ["BulkClient", "BulkError", "BulkTimeout", "BulkTransportError"]

_READ_BUFFER_BYTES = 8 * 1024 * 1024  # above a 1024x1024 PNG in base64 with its JSON around it


class BulkError(UpstreamError):
    """The request did not get an answer."""


class BulkTimeout(BulkError):
    pass


class BulkTransportError(BulkError):
    pass


class BulkClient:
    """POST JSON, get (status, body bytes). Created inside the running event loop (lifespan)."""

    def __init__(self, *, max_connections: int, connect_timeout: float) -> None:
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            # trust_env=False: never route a worker request through a proxy from the environment.
            connector = aiohttp.TCPConnector(limit=self._max_connections, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(connector=connector, read_bufsize=_READ_BUFFER_BYTES,
                                                  trust_env=False, auto_decompress=False)
        return self._session

    async def post_json(self, url: str, body: Any, *, timeout: float,
                        headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        timeouts = aiohttp.ClientTimeout(total=timeout, sock_connect=self._connect_timeout)
        try:
            async with self._open().post(url, data=_json_bytes(body), timeout=timeouts, allow_redirects=False,
                                         headers={**(headers or {}), "Content-Type": "application/json"}
                                         ) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as exc:  # aiohttp's ServerTimeoutError and total timeouts are both this
            raise BulkTimeout(type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise BulkTransportError(f"{type(exc).__name__}: {exc}") from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _json_bytes(body: Any) -> bytes:
    try:
        return orjson.dumps(body)
    except TypeError:  # e.g. an integer past 64 bits: what the standard library writes is still JSON
        return json.dumps(body).encode()
