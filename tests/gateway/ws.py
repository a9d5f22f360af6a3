"""A small WebSocket client for the gateway's /v1/ws, on the `websockets` library (sync API)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from websockets.sync.client import ClientConnection, connect


class Events:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection

    def send(self, message: dict | str) -> None:
        self.connection.send(message if isinstance(message, str) else json.dumps(message))

    def next(self, timeout: float = 60) -> dict:
        return json.loads(self.connection.recv(timeout=timeout))

    def until_final(self, timeout: float = 60) -> list[dict]:
        """Events up to and including `done` or `error`."""
        seen = [self.next(timeout)]
        while seen[-1]["event"] not in ("done", "error"):
            seen.append(self.next(timeout))
        return seen


@contextmanager
def websocket(gateway_url: str, query: str = "") -> Iterator[Events]:
    url = gateway_url.replace("http://", "ws://") + "/v1/ws" + (f"?{query}" if query else "")
    with connect(url, max_size=2**24) as connection:
        yield Events(connection)
