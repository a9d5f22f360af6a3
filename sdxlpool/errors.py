"""Every error sdxlpool raises on purpose, so callers know which level to catch.

    SDXLPoolError
    ├── ConfigError            bad command-line flag, setting or file: the CLI prints one line, exits 2
    │   ├── CheckpointError    a model path that is missing, unreadable or not an SDXL checkpoint
    │   └── PoolSpecError      an SDXLPool spec that does not validate (sdxlpool.api.spec)
    └── RequestError           a generation request that cannot be served as asked (HTTP 4xx)
        ├── InvalidRequest     a field is malformed or over a limit (422); `.field` names it
        ├── NotFound           an unknown sampler, scheduler or checkpoint (404)
        └── QueueFull          the worker's queue is at its bound (503 + Retry-After)

Anything else escaping is a bug, not a user error.
"""

from __future__ import annotations

__all__ = [
    "SDXLPoolError",
    "ConfigError",
    "CheckpointError",
    "RequestError",
    "InvalidRequest",
    "NotFound",
    "QueueFull",
]


class SDXLPoolError(Exception):
    """Base class of every deliberate sdxlpool error."""


class ConfigError(SDXLPoolError):
    """A flag, setting or input file is wrong; the message says which and how to fix it."""


class CheckpointError(ConfigError):
    """A model path is missing, unreadable, or not an SDXL base/refiner checkpoint."""


class RequestError(SDXLPoolError):
    """A request that cannot be served as asked. `status` is the HTTP status to answer with."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(RequestError):
    status = 422
    code = "invalid_request"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(RequestError):
    status = 404
    code = "not_found"


class QueueFull(RequestError):
    status = 503
    code = "queue_full"

    def __init__(self, detail: str, retry_after: float) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
