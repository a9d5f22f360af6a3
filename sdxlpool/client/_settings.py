"""Where `sdxlpool generate` and `generate()` go, and with which key, when not told: the environment."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from sdxlpool.client._defaults import API_KEY_ENV, GATEWAY_ENV

__all__ = ["ClientSettings"]


class ClientSettings(BaseSettings):
    """$SDXLPOOL_GATEWAY_URL and $SDXLPOOL_API_KEY; empty means unset. Read each time it is built, so a
    program that sets them before a call is heard."""

    gateway_url: str = Field("", validation_alias=GATEWAY_ENV)
    api_key: str = Field("", validation_alias=API_KEY_ENV)
