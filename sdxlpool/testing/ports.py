"""Free ports on 127.0.0.1 for servers started by tests, benchmarks and reliability scripts."""

from __future__ import annotations

import socket

__all__ = ["connection_refused", "free_port", "free_udp_port"]


def free_port() -> int:
    """A TCP port that nothing listens on right now (the kernel's pick; a race with other binders is possible)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 right now (a gateway's --peer-port; the same race as `free_port`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connection_refused(port: int) -> bool:
    """True when a connection to 127.0.0.1:`port` is refused: nothing listens there (any more)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True
