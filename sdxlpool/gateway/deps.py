"""FastAPI dependencies of the gateway, as `Annotated` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from sdxlpool.gateway.service import GatewayService

__all__ = ["GatewayDep"]


def get_gateway(request: Request) -> GatewayService:
    return request.app.state.gateway


GatewayDep = Annotated[GatewayService, Depends(get_gateway)]
