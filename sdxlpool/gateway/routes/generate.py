"""The native API: POST /v1/generate (JSON, or NDJSON events) and WebSocket /v1/ws.

Both take a JSON object of A1111 txt2img fields plus `gpus` (allowed GPU models, preferred first)
and report the events of `sdxlpool.gateway.events`. An object with `init_images` (base64 images) is
an img2img, with A1111's img2img fields (`mask` for inpainting, `denoising_strength`, ...); its
images are checked before routing, as on POST /sdapi/v1/img2img.

`X-SDXL-Debug-Routing: 1` (or `"debug_routing": true` in the body, or in a WebSocket request)
adds every attempt's scheduler decision as `routing` to the result (and to an error).

WebSocket protocol: the client sends one request object (optionally with an `id`, echoed in every
event of that generation) and receives `queued`, `starting` (only while a worker of its GPU models
is being started: scale from zero), `assigned`, `progress`..., then `done` or `error`; it may then send the next request on the same socket. `{"cancel": true}` while a
generation runs stops it (an `error` event with code `cancelled` follows); closing the socket stops
it too. A request sent while another runs gets an `error` (`busy`), and the running one goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Header, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse

from sdxlpool._http import until_disconnected
from sdxlpool.api.strict import strict_from_header
from sdxlpool.errors import RequestError
from sdxlpool.gateway.api_keys import presented_key
from sdxlpool.gateway.deps import GatewayDep
from sdxlpool.gateway.routes._client import result_headers
from sdxlpool.gateway.routes._debug import error_with_routing, routing_of, wants_routing
from sdxlpool.gateway.service import GatewayService
from sdxlpool.gateway.streaming import Generation

router = APIRouter(tags=["native"])

NDJSON = "application/x-ndjson"


@router.post("/v1/generate", responses={200: {"content": {NDJSON: {}}}})
async def generate(
    gateway: GatewayDep,
    request: Request,
    body: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take any JSON object
    accept: str = Header(default="application/json"),
    x_sdxl_debug_routing: str | None = Header(default=None),
    x_sdxl_strict: str | None = Header(default=None),
) -> Any:
    """Generate; `Accept: application/x-ndjson` streams the events, one JSON object per line.
    `X-SDXL-Strict: 1` or `0` sets strict mode for the request, as on txt2img."""
    client = request.client.host if request.client else ""
    key = presented_key(request.headers, request.query_params)
    debug_routing = wants_routing(x_sdxl_debug_routing)
    strict = strict_from_header(x_sdxl_strict, None)
    if NDJSON in accept:
        generation = Generation(lambda sink: gateway.generate(body, client=client, api_key=key, on_event=sink,
                                                              debug_routing=debug_routing, strict=strict))
        return StreamingResponse(_ndjson(generation), media_type=NDJSON)
    try:
        native = await until_disconnected(request, gateway.generate(body, client=client, api_key=key,
                                                                    debug_routing=debug_routing, strict=strict))
    except RequestError as exc:
        if routing_of(exc) is not None:  # set only when asked for, by the header or the body field
            return error_with_routing(exc)
        raise
    return JSONResponse(native, headers=result_headers(native))


async def _ndjson(generation: Generation) -> AsyncIterator[bytes]:
    try:
        async for event in generation.events():
            yield json.dumps(event).encode() + b"\n"
    finally:  # the client hung up mid-stream: Starlette cancels us, and we cancel the job
        await generation.cancel()


@router.websocket("/v1/ws")
async def websocket(gateway: GatewayDep, socket: WebSocket) -> None:
    await socket.accept()
    session = _Session(gateway, socket)
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await session.receive()
            if message is not None:
                await session.run(message)


class _Session:
    """One WebSocket connection: one generation at a time, its events sent as they happen, while
    the client's messages are still read (to cancel, or to notice it has gone)."""

    def __init__(self, gateway: GatewayService, socket: WebSocket) -> None:
        self.gateway, self.socket = gateway, socket
        self.client = socket.client.host if socket.client else ""
        self.api_key = presented_key(socket.headers, socket.query_params)  # checked per generation
        self._send_lock = asyncio.Lock()  # the event pump and the reader both send

    async def send(self, event: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.socket.send_json(event)

    async def receive(self) -> dict[str, Any] | None:
        """The next request object; a message that is not one is answered with an error event."""
        text = await self.socket.receive_text()
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            await self.send({"event": "error", "status": 422, "error": "invalid_request",
                             "detail": "body: each message must be a JSON object of txt2img (or img2img) fields"})
            return None
        return message

    async def run(self, message: dict[str, Any]) -> None:
        tag = {"id": message.pop("id")} if "id" in message else {}
        if message.pop("cancel", None):
            return  # a cancel arriving after its generation ended: nothing to stop
        generation = Generation(lambda sink: self.gateway.generate(message, client=self.client, api_key=self.api_key,
                                                                   on_event=sink))
        pump = asyncio.ensure_future(self._pump(generation, tag))
        try:
            while True:
                reader = asyncio.ensure_future(self.receive())
                done, _ = await asyncio.wait({pump, reader}, return_when=asyncio.FIRST_COMPLETED)
                if pump in done:
                    await _discard(reader)
                    pump.result()
                    return
                other = reader.result()  # WebSocketDisconnect: the client left; the finally stops the job
                if other is not None and other.get("cancel"):
                    await generation.cancel()  # the pump then sends the `cancelled` error event
                elif other is not None:
                    await self.send({"event": "error", "status": 409, "error": "busy",
                                     "detail": "one generation at a time per connection; send the next"
                                               " when this one is done",
                                     **({"id": other["id"]} if "id" in other else {})})
        finally:
            await generation.cancel()
            await _discard(pump)

    async def _pump(self, generation: Generation, tag: dict[str, Any]) -> None:
        async for event in generation.events():
            await self.send({**event, **tag})


async def _discard(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
    with contextlib.suppress(BaseException):
        await task
