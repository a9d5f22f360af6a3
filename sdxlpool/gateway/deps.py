"""FastAPI dependencies of the gateway, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from sdxlpool.gateway.service import GatewayService

__all__ = ["GatewayDep"]


async def get_gateway(connection: HTTPConnection) -> GatewayService:
    # HTTPConnection, not Request: the WebSocket route takes this dependency too. async: FastAPI
    # runs a plain `def` dependency in its thread pool, a thread hop on every request.
    return connection.app.state.gateway


GatewayDep = Annotated[GatewayService, Depends(get_gateway)]
