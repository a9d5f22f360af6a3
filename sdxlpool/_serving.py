"""Running an sdxlpool HTTP service from the command line, the same way for every command.

`serve(command, make_app, host, port)` checks the port first (a busy port is a one-line error,
exit 2), runs uvicorn, stops the server when the app reports a fatal start-up error (exit 1 with
one line), and makes a clean SIGTERM stop exit 0, as Kubernetes and process managers expect.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from sdxlpool.errors import ConfigError

__all__ = ["serve", "check_port_free"]

OnFatal = Callable[[BaseException], None]


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def serve(command: str, make_app: Callable[[OnFatal], Any], *, host: str, port: int) -> int:
    import uvicorn

    check_port_free(host, port)
    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    config = uvicorn.Config(make_app(on_fatal), host=host, port=port, log_level="info", access_log=False,
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    # uvicorn re-raises the signal that stopped it once it has shut down cleanly; a no-op handler
    # for SIGTERM makes that clean stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if failures:
        print(f"sdxlpool {command}: error: {failures[0]}", file=sys.stderr)
        return 1
    return 0
