"""Optional API keys: who is calling, at what rate, and how far ahead in the gateway queue.

    # --api-keys FILE (re-read when it changes; `sdxlpool api-key NAME` prints a new key and its entry)
    keys:
      - name: studio-a
        sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
        ratePerMinute: 120      # optional: this key's own token bucket (default: the gateway's limit)
        burst: 20               # optional
        priority: 10            # optional, default 0: higher waits ahead in the saturated gateway queue

Only a SHA-256 of each key is stored (keys are long random strings, so a fast hash is enough; no
salt is needed against guessing a 256-bit secret). A presented key is hashed and compared with
every entry in constant time (`hmac.compare_digest`, no early exit), so response timing does not
tell how much of a guess was right. With keys configured, generation requests need one
(`Authorization: Bearer KEY`, or `X-API-Key: KEY`, or HTTP Basic with the key as password for
A1111 clients that only know A1111's `--api-auth`; WebSocket clients that cannot set headers
may pass `?api_key=KEY`): none or a wrong one is 401. Without a keys file the gateway is open and
clients are told apart by address.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxlpool._files import read_yaml
from sdxlpool.errors import ConfigError, RequestError

__all__ = ["ApiKey", "ApiKeys", "Caller", "Unauthorized", "hash_key", "new_key", "load_api_keys", "presented_key"]

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_FIELDS = ("name", "sha256", "ratePerMinute", "burst", "priority")
KEY_PREFIX = "sdxl-"


class Unauthorized(RequestError):
    status = 401
    code = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}  # noqa: RUF012 - a constant, read by the error handler


@dataclass(frozen=True)
class ApiKey:
    name: str
    sha256: bytes
    rate_per_minute: float | None = None
    burst: int | None = None
    priority: int = 0


@dataclass(frozen=True)
class Caller:
    """Who a request is from, as admission sees it."""

    identity: str  # "key:<name>" or "addr:<client address>": the rate-limit bucket
    priority: int = 0
    rate_per_minute: float | None = None  # None: the gateway's default limit
    burst: int | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


class ApiKeys:
    def __init__(self, keys: list[ApiKey]) -> None:
        self.keys = keys

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def caller(self, presented: str | None, address: str) -> Caller:
        """The caller of a request; `Unauthorized` when keys are configured and this one is not valid."""
        if not self.keys:
            return Caller(f"addr:{address}")
        if not presented:
            raise Unauthorized("an API key is required: send Authorization: Bearer <key>")
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        found: ApiKey | None = None
        for key in self.keys:  # every entry compared, whatever matched: no early exit to time
            if hmac.compare_digest(digest, key.sha256):
                found = key
        if found is None:
            raise Unauthorized("the API key is not valid")
        return Caller(f"key:{found.name}", found.priority, found.rate_per_minute, found.burst)


def presented_key(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The key a client sent: `Authorization: Bearer KEY`, `X-API-Key: KEY`, `?api_key=KEY`, or
    HTTP Basic with the key as the password (any user name): the only credential A1111 clients
    such as Open WebUI and SillyTavern can send, since A1111 itself knows only `--api-auth user:pass`."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if scheme.lower() == "basic" and value.strip():
        password = _basic_password(value.strip())
        if password:
            return password
    return headers.get("x-api-key") or (query or {}).get("api_key") or None


def _basic_password(credentials: str) -> str | None:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[2] or None


def load_api_keys(path: Path) -> ApiKeys:
    data = read_yaml(path)
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a mapping with a 'keys' list")
    keys: list[ApiKey] = []
    for i, entry in enumerate(entries):
        try:
            key = _entry(entry)
        except ValueError as exc:
            raise ConfigError(f"{path}: keys[{i}]: {exc}") from None
        if any(k.name == key.name for k in keys):
            raise ConfigError(f"{path}: keys[{i}]: duplicate name {key.name!r}")
        keys.append(key)
    return ApiKeys(keys)


def _entry(entry: Any) -> ApiKey:
    if not isinstance(entry, dict):
        raise ValueError("expected a mapping with name and sha256")
    unknown = sorted(str(k) for k in entry if k not in _FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field (allowed: {', '.join(_FIELDS)})")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError("name: required, a non-empty string")
    digest = entry.get("sha256")
    if not isinstance(digest, str) or not _HEX64.match(digest.strip().lower()):
        raise ValueError("sha256: required, the 64 hex digits of the key's SHA-256 (not the key itself)")
    rate = entry.get("ratePerMinute")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or not math.isfinite(rate) or rate < 0):
        raise ValueError(f"ratePerMinute: must be a number >= 0, got {rate!r}")
    burst = entry.get("burst")
    if burst is not None and (isinstance(burst, bool) or not isinstance(burst, int) or burst < 1):
        raise ValueError(f"burst: must be an integer >= 1, got {burst!r}")
    priority = entry.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority: must be an integer, got {priority!r}")
    return ApiKey(name.strip(), bytes.fromhex(digest.strip().lower()),
                  float(rate) if rate is not None else None, burst, priority)
