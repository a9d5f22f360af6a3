"""Running an sdxlpool HTTP service from the command line, the same way for every command.

`serve(command, make_app, host, port)` checks the port first (a busy port is a one-line error,
exit 2), runs uvicorn, stops the server when the app reports a fatal start-up error (exit 1 with
one line), and makes a clean SIGTERM stop exit 0, as Kubernetes and process managers expect.

A stop drains: on SIGTERM the service closes its listening socket at once (a new connection is
refused, so a gateway or a load balancer tries elsewhere), marks `app.state.draining` (a worker's
/readyz answers 503 on any connection still open), lets every request in flight finish, answers
included, for up to `drain_seconds`, and only then runs the app's shutdown. A worker passes its
`--drain-seconds` (its queued jobs are requests in flight too, so they are finished, not dropped);
what is still running after that is cancelled, as before.

`server_config` is the uvicorn configuration every service runs with, hostile clients in mind:
WebSocket messages are capped at the service's body cap (uvicorn's default is 16 MiB), and a
connection must finish each request's headers within `header_timeout` seconds of its first byte
(or of connecting) or it is closed. uvicorn itself only times out idle keep-alive connections: a
client dribbling a header byte a second would otherwise hold its connection forever. Bodies that
stall are the ASGI middleware's business (`sdxlpool._limits`, 408).
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

from sdxlpool.errors import ConfigError

__all__ = ["serve", "check_port_free", "server_config", "DRAIN_SECONDS", "HEADER_TIMEOUT"]

OnFatal = Callable[[BaseException], None]
HEADER_TIMEOUT = 10.0  # seconds from a request's first byte (or the connection) to the end of its headers
DRAIN_SECONDS = 5.0  # how long a stop waits for requests in flight, unless the command says otherwise


def server_config(app: Any, *, host: str, port: int, max_message_bytes: int | None = None,
                  header_timeout: float = HEADER_TIMEOUT, **options: Any) -> Any:
    """uvicorn.Config for `app` with the header deadline and WebSocket message cap above."""
    import uvicorn

    if max_message_bytes is not None:
        options["ws_max_size"] = max_message_bytes
    return uvicorn.Config(app, host=host, port=port, http=_with_header_deadline(header_timeout), **options)


def _with_header_deadline(timeout: float) -> type:
    """uvicorn's HTTP protocol (httptools when installed, else h11) closing a connection whose request
    headers are not complete `timeout` seconds after their first byte arrived, or after it connected."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]

    class HeaderDeadline(Base):
        _deadline: Any = None
        _upgraded = False

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            before = self.cycle
            super().data_received(data)
            if self.cycle is not before or self._upgraded:  # a request's headers are complete
                self._disarm()
            elif self._deadline is None and (self.cycle is None or self.cycle.response_complete):
                self._arm()  # the first bytes of the next request on a kept-alive connection

        def handle_websocket_upgrade(self, *args: Any) -> None:
            self._upgraded = True  # the WebSocket protocol takes the connection over: no deadline there
            self._disarm()
            super().handle_websocket_upgrade(*args)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(timeout, self._expire)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expire(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def check_port_free(host: str, port: int, *, udp: bool = False) -> None:
    """`ConfigError` (one line) when `host`:`port` (TCP, or UDP) cannot be listened on."""
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as probe:
        if not udp:  # a TCP port in TIME_WAIT is free to listen on; a UDP port has no such state
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}{' (UDP)' if udp else ''}: {exc.strerror}") from None


def serve(command: str, make_app: Callable[[OnFatal], Any], *, host: str, port: int,
          max_message_bytes: int | None = None, drain_seconds: float = DRAIN_SECONDS) -> int:
    import uvicorn

    check_port_free(host, port)
    failures: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_fatal(exc: BaseException) -> None:
        failures.append(exc)
        if server is not None:
            server.should_exit = True

    # No access log: it would record query strings, where WebSocket clients may put their API key.
    app = make_app(on_fatal)
    config = server_config(app, host=host, port=port, max_message_bytes=max_message_bytes,
                           log_level="info", access_log=False, timeout_graceful_shutdown=drain_seconds)

    class Draining(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state = getattr(app, "state", None)
            if state is not None:  # the app learns of the stop at once: its /readyz can say 503
                state.draining = True
            super().handle_exit(sig, frame)

    server = Draining(config)
    # uvicorn re-raises the signal that stopped it once it has shut down cleanly; a no-op handler
    # for SIGTERM makes that clean stop exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    if failures:
        print(f"sdxlpool {command}: error: {failures[0]}", file=sys.stderr)
        return 1
    return 0

