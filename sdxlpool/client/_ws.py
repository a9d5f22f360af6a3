"""One generation over the gateway's WebSocket `/v1/ws`: send the request, follow its events,
return the result (`sdxlpool.gateway.events` describes the events).

    ClientError                 `generate` got no image (an SDXLPoolError)
    ├── GatewayError            the gateway answered with an `error` event: .status .code .detail
    │                           (.retry_after with 429), the codes its HTTP API would answer
    ├── GatewayUnreachable      no WebSocket to the gateway (refused, DNS, TLS, not a gateway),
    │                           or the connection dropped before the result
    └── GatewayTimeout          no result within `timeout` seconds

Leaving early in any way (an exception, a timeout, Ctrl-C in the caller) closes the socket, and
the gateway cancels the job on its worker when its socket closes.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from sdxlpool.client._defaults import DEFAULT_GATEWAY
from sdxlpool.client._settings import ClientSettings
from sdxlpool.errors import SDXLPoolError

__all__ = ["generate", "Result", "websocket_url", "ClientError", "GatewayError", "GatewayUnreachable",
           "GatewayTimeout"]

EventCallback = Callable[[dict[str, Any]], None]

OPEN_TIMEOUT = 10.0  # seconds for the TCP + TLS + WebSocket handshake
CLOSE_TIMEOUT = 2.0  # seconds to wait for the gateway to acknowledge our close
MAX_MESSAGE = 256 * 2**20  # the `done` event carries base64 PNGs: a few MB at 1024x1024
# Longest the calling thread blocks in one wait for the next event. Python runs signal handlers
# only in the main thread, between bytecodes: when the kernel hands SIGINT to the WebSocket's reader
# thread instead, a main thread blocked until the next event (none come while a request waits at
# the gateway) would not see Ctrl-C until then. Waking up this often bounds that delay.
WAIT_SLICE = 0.25


class ClientError(SDXLPoolError):
    """The generation produced no image; the message says why."""


class GatewayError(ClientError):
    """The gateway refused or failed the request (an `error` event)."""

    def __init__(self, status: int, code: str, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status, self.code, self.detail, self.retry_after = status, code, detail, retry_after


class GatewayUnreachable(ClientError):
    """No connection to the gateway, or it dropped before the result."""

    def __init__(self, url: str, reason: str, *, lost: bool = False) -> None:
        verb = "lost the connection to" if lost else "cannot connect to"
        super().__init__(f"{verb} the gateway at {url}: {reason}")
        self.url, self.reason, self.lost = url, reason, lost


class GatewayTimeout(ClientError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"no result after {seconds:g} s; gave up, and the gateway cancels the job")
        self.seconds = seconds


@dataclass(frozen=True)
class Result:
    """A finished generation: the PNG bytes and where and how long it ran."""

    images: tuple[bytes, ...]
    seed: int | None
    gpu_model: str  # canonical slug, e.g. "a100-80gb"
    gpu_name: str  # display name, e.g. "A100 80GB"
    provider: str
    location: str
    worker: str
    attempts: int
    queue_seconds: float | None
    inference_seconds: float | None
    total_seconds: float | None
    info: dict[str, Any] = field(default_factory=dict)  # the worker's A1111 info (infotexts, sampler, ...)

    @property
    def image(self) -> bytes:
        """The first (usually only) PNG."""
        return self.images[0]

    def metadata(self) -> dict[str, Any]:
        """Everything but the image data, as JSON-ready values (the shape of the gateway's result)."""
        return {"seed": self.seed, "gpu_model": self.gpu_model, "gpu_name": self.gpu_name, "provider": self.provider,
                "location": self.location, "worker": self.worker, "attempts": self.attempts,
                "timings": {"queue_seconds": self.queue_seconds, "inference_seconds": self.inference_seconds,
                            "total_seconds": self.total_seconds},
                "info": self.info}

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> Result:
        """From the gateway's `done` event (or the body of POST /v1/generate)."""
        encoded = event.get("images") or ([event["image"]] if event.get("image") else [])
        try:
            images = tuple(base64.b64decode(text, validate=True) for text in encoded)
        except (binascii.Error, TypeError, ValueError):
            raise ClientError("the gateway's result holds an image that is not valid base64") from None
        if not images:
            raise ClientError("the gateway's result holds no image")
        timings = given if isinstance(given := event.get("timings"), dict) else {}
        info = given if isinstance(given := event.get("info"), dict) else {}
        seed = event.get("seed")
        return cls(
            images=images, seed=seed if isinstance(seed, int) else None,
            gpu_model=str(event.get("gpu_model") or ""), gpu_name=str(event.get("gpu_name") or ""),
            provider=str(event.get("provider") or ""), location=str(event.get("location") or ""),
            worker=str(event.get("worker") or ""), attempts=int(event.get("attempts") or 1),
            queue_seconds=_seconds(timings.get("queue_seconds")),
            inference_seconds=_seconds(timings.get("inference_seconds")),
            total_seconds=_seconds(timings.get("total_seconds")), info=info,
        )


def websocket_url(gateway: str) -> str:
    """`http://host:8080` -> `ws://host:8080/v1/ws`; https -> wss; a path prefix is kept.

    A `ws://` or `wss://` URL is taken as is when it already ends in /v1/ws. ValueError names what
    is wrong with anything else.
    """
    parts = urllib.parse.urlsplit(gateway.strip())
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise ValueError(f"expected an http://, https://, ws:// or wss:// URL, got {gateway!r}")
    if not parts.hostname:
        raise ValueError(f"no host in {gateway!r}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError:
        raise ValueError(f"bad port in {gateway!r}") from None
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/ws"):
        path += "/v1/ws"
    return urllib.parse.urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def generate(
    prompt: str,
    *,
    gateway: str | None = None,
    gpus: Sequence[str] = (),
    negative_prompt: str | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    cfg_scale: float | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    refiner_switch_at: float | None = None,
    api_key: str | None = None,
    timeout: float = 600.0,
    on_event: EventCallback | None = None,
    **fields: Any,
) -> Result:
    """Generate one image through the gateway and return it with where and how long it ran.

    `gateway` defaults to $SDXLPOOL_GATEWAY_URL, else http://127.0.0.1:8080; `api_key` to
    $SDXLPOOL_API_KEY. `gpus` are the allowed GPU models, preferred first (default: any). Options
    left None take the pool's defaults; `fields` are passed on as further A1111 fields: txt2img's, or
    with `init_images` (base64 images) img2img's (`mask`, `denoising_strength`, ...).
    `on_event` sees every event as it arrives (queued, assigned, progress, done/error).
    Raises a `ClientError` (see the module docstring) when no image comes back.
    """
    # 1. Where to, and what.
    environment = ClientSettings()
    gateway = gateway or environment.gateway_url or DEFAULT_GATEWAY
    api_key = api_key if api_key is not None else environment.api_key or None
    url = websocket_url(gateway)
    options = {"negative_prompt": negative_prompt, "sampler_name": sampler, "steps": steps, "cfg_scale": cfg_scale,
               "width": width, "height": height, "seed": seed, "refiner_switch_at": refiner_switch_at}
    request: dict[str, Any] = {"prompt": prompt, **{k: v for k, v in options.items() if v is not None}, **fields}
    if gpus:
        request["gpus"] = list(gpus)
    deadline = time.monotonic() + timeout

    # 2. Connect. The key goes in a header, never in the URL (which proxies and logs keep).
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    try:
        connection = connect(url, additional_headers=headers, open_timeout=min(OPEN_TIMEOUT, timeout),
                             close_timeout=CLOSE_TIMEOUT, max_size=MAX_MESSAGE)
    except (OSError, WebSocketException) as exc:  # TimeoutError and ssl errors are OSErrors
        raise GatewayUnreachable(gateway, _reason(exc)) from None

    # 3. Send the request, then follow its events to `done` or `error`. Leaving this block by any
    #    way closes the socket, and the gateway cancels the job.
    with connection:
        try:
            connection.send(json.dumps(request))
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GatewayTimeout(timeout)
                try:
                    message = connection.recv(timeout=min(remaining, WAIT_SLICE))
                except TimeoutError:
                    continue  # the deadline is checked above
                event = _event(message)
                if on_event is not None:
                    on_event(event)
                if event["event"] == "done":
                    return Result.from_event(event)
                if event["event"] == "error":
                    raise GatewayError(_int(event.get("status"), 500), str(event.get("error") or "error"),
                                       str(event.get("detail") or ""), _retry_after(event.get("retry_after")))
        except ConnectionClosed as exc:
            raise GatewayUnreachable(gateway, _closed_reason(exc), lost=True) from None


def _event(message: str | bytes) -> dict[str, Any]:
    try:
        event = json.loads(message)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        raise ClientError(f"unexpected message from the gateway: {str(message)[:200]!r}")
    return event


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, InvalidStatus):
        return f"it answered HTTP {exc.response.status_code} to the WebSocket request (is it an sdxlpool gateway?)"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _closed_reason(exc: ConnectionClosed) -> str:
    close = exc.rcvd or exc.sent
    if close is None:
        return "the connection closed before the result"
    return f"closed with code {close.code}" + (f" ({close.reason})" if close.reason else "") + " before the result"


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) else default


def _retry_after(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
