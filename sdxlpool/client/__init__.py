"""`sdxlpool generate` and a small Python client: one image from the gateway over its WebSocket.

    from sdxlpool.client import generate

    result = generate("a lighthouse at dusk", gateway="http://127.0.0.1:8080", gpus=["A100", "RTX-3090"],
                      steps=25, seed=42, on_event=print)
    open("out.png", "wb").write(result.image)
    print(result.gpu_name, result.provider, result.location, result.inference_seconds)

`generate` sends the request to `/v1/ws` (ws:// for an http:// gateway, wss:// for https://),
passes every event (queued, assigned, progress, done/error) to `on_event`, and returns a `Result`
or raises a `ClientError` (`GatewayError` with the gateway's status, code and detail;
`GatewayUnreachable`; `GatewayTimeout`). Leaving early closes the socket, which cancels the job.

Surface: `add_parser` registers the command on the `sdxlpool` CLI and `run_generate` is its
handler (both import only the standard library); `generate`, `Result` and the errors load the
`websockets` library on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdxlpool._lazy import lazy_attributes
from sdxlpool.client._cli import add_parser, run_generate

if TYPE_CHECKING:
    from sdxlpool.client._ws import (
        ClientError,
        GatewayError,
        GatewayTimeout,
        GatewayUnreachable,
        Result,
        generate,
        websocket_url,
    )

__all__ = ["add_parser", "run_generate", "generate", "Result", "websocket_url", "ClientError", "GatewayError",
           "GatewayUnreachable", "GatewayTimeout"]

__getattr__ = lazy_attributes(__name__, {name: "sdxlpool.client._ws" for name in __all__[2:]})
