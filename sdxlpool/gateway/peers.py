"""Dispatch sharing between the replicas of one pool's gateway ("peers"), over UDP.

Why: routing counts, on top of a worker's scraped `pending_steps`, the work sent to it since that
scrape (`BackendState.unseen_cost`). One replica knows only its own dispatches, so between two
scrapes (100 ms) two replicas can both send to the worker that looked idle. In a discrete-event
model of a pool with a 10x spread of GPU speeds at 80 % load, p95 latency was 1.16 s with one
gateway, 1.31 s with two replicas and 1.44 s with four; with every replica hearing every replica's
dispatches, two and four route as well as one.

What: right after a dispatch (`forward.py`, step 2b), the gateway `announce`s it: one datagram to
every peer naming the backend and the request's cost. A peer that hears it counts that work against
the backend (`BackendState.peer_dispatch`, at its own `time.monotonic()`: replicas' clocks are not
comparable) until its own next scrape of the worker includes it. Nothing else is shared: no
completions (the scrape says what is done), no acknowledgements, no state to agree on.

Wire format: one compact JSON object per datagram, UTF-8, at most `MAX_DATAGRAM_BYTES`::

    {"v":1,"s":"5f0c1a2b","b":"h100-1","c":20.0}

``v`` the protocol version (`PROTOCOL_VERSION`); ``s`` the sender, a random id per process, so a
replica that finds itself among its peers ignores its own announcements instead of counting its
work twice; ``b`` the backend's name (the backends file's, or the worker pod's: the replicas of one
pool see the same names); ``c`` the cost in normalised steps. Keys a later version-1 sender adds
are ignored. Received and ignored (and counted as such, below): datagrams from an address that is
not a peer's (replicas send from the port they listen on), oversized, malformed, of another version,
one's own, or naming a backend this replica does not know (yet).

Failure: UDP, fire and forget. A lost datagram leaves that one dispatch unknown to that peer until
its next scrape of the worker, which is how every replica routes without sharing. A send never
blocks and never fails a request: a peer that is down costs a datagram, and send errors are only
counted. Metric: ``sdxl_gateway_peer_messages_total{direction="sent|received", outcome}``, outcome
``ok`` or ``error`` for sent (one per datagram, per peer) and ``ok`` or ``ignored`` for received.

Configuration: ``--peer-port`` (the UDP port to listen on; unset: sharing off) and ``--peers
HOST:PORT,...`` (the other replicas; names are resolved at start and every
`RESOLVE_INTERVAL` seconds, so a name whose address changes is followed). With ``--kubernetes``
the other ready gateway pods of the pool are added as they come and go
(`discovery.kubernetes.peers_from_pods`); the operator sets ``--peer-port 8081``
(`sdxlpool.api.ports.GATEWAY_PEER_PORT`). Listen on an address of the peers' family (IPv4 or IPv6).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, cast

from sdxlpool.gateway.pool import BackendPool

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "PROTOCOL_VERSION",
    "RESOLVE_INTERVAL",
    "Direction",
    "MessageCounter",
    "Outcome",
    "PeerAddress",
    "PeerDispatch",
    "PeerLink",
    "decode_dispatch",
    "encode_dispatch",
    "parse_peer_address",
]

log = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
# Far above a real announcement (a pod name is at most 253 characters), far below a datagram that
# would fragment on an ordinary MTU.
MAX_DATAGRAM_BYTES = 1024
RESOLVE_INTERVAL = 30.0  # seconds between two resolutions of the --peers names

PeerAddress = tuple[str, int]  # (host or IP, port)
Direction = Literal["sent", "received"]
Outcome = Literal["ok", "error", "ignored"]
MessageCounter = Callable[[Direction, Outcome, int], None]  # (direction, outcome, how many)


@dataclass(frozen=True)
class PeerDispatch:
    """One announcement: `sender` sent a request of `cost` normalised steps to `backend`."""

    sender: str
    backend: str
    cost: float


def encode_dispatch(message: PeerDispatch) -> bytes:
    return json.dumps({"v": PROTOCOL_VERSION, "s": message.sender, "b": message.backend, "c": message.cost},
                      separators=(",", ":"), ensure_ascii=False).encode()


def decode_dispatch(data: bytes) -> PeerDispatch | None:
    """The announcement in `data`, or None for anything else (too big, not JSON, another version,
    a field missing or of the wrong type, a cost that is not a finite number >= 0)."""
    if len(data) > MAX_DATAGRAM_BYTES:
        return None
    try:
        fields: Any = json.loads(data)
    except ValueError:  # not UTF-8 or not JSON
        return None
    if not isinstance(fields, dict) or fields.get("v") != PROTOCOL_VERSION or isinstance(fields.get("v"), bool):
        return None
    sender, backend, cost = fields.get("s"), fields.get("b"), fields.get("c")
    if not isinstance(sender, str) or not isinstance(backend, str) or not backend:
        return None
    if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost) or cost < 0:
        return None
    return PeerDispatch(sender, backend, float(cost))


def parse_peer_address(text: str) -> PeerAddress:
    """``host:port`` or ``[IPv6]:port`` -> (host, port); `ValueError` saying what is wrong."""
    value = text.strip()
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        host = ""  # a bare IPv6 address: its port would be ambiguous
    if (not sep or not host or any(c.isspace() for c in host) or not (port.isascii() and port.isdigit())
            or not 1 <= int(port) <= 65535):
        raise ValueError(f"must be host:port with a port 1-65535 (IPv6: [addr]:port), got {text!r}")
    return host, int(port)


class PeerLink(asyncio.DatagramProtocol):
    """The UDP socket this replica announces its dispatches on and hears its peers' on.

    `open` it in the gateway's lifespan, `close` it at shutdown. Peers are the resolved `--peers`
    plus those discovery reports (`set_discovered`); datagrams are accepted from those addresses
    only.
    """

    def __init__(self, pool: BackendPool, count: MessageCounter, static_peers: Iterable[PeerAddress] = ()) -> None:
        self.pool = pool
        self.count = count
        self.sender = secrets.token_hex(4)  # this process, in every announcement
        self.static_peers = tuple(static_peers)
        self._resolved: dict[PeerAddress, frozenset[PeerAddress]] = {}  # per --peers entry: its IP addresses
        self._discovered: frozenset[PeerAddress] = frozenset()
        self._peers: tuple[PeerAddress, ...] = ()  # both together: where announcements go
        self._peer_set: frozenset[PeerAddress] = frozenset()  # the same, for the check on receipt
        self._transport: asyncio.DatagramTransport | None = None
        self._family = socket.AF_INET
        self._resolving: asyncio.Task[None] | None = None
        self._send_errors = 0

    @classmethod
    async def open(cls, pool: BackendPool, count: MessageCounter, *, host: str, port: int,
                   peers: Iterable[PeerAddress] = ()) -> PeerLink:
        """Listen on UDP `host`:`port`; resolve `peers` now and every `RESOLVE_INTERVAL` seconds."""
        link = cls(pool, count, peers)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: link, local_addr=(host, port))
        await link._resolve_static()
        if link.static_peers:
            link._resolving = asyncio.create_task(link._keep_resolving())
        return link

    def close(self) -> None:
        if self._resolving is not None:
            self._resolving.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def peers(self) -> tuple[PeerAddress, ...]:
        """Where announcements go now (IP, port)."""
        return self._peers

    @property
    def local_address(self) -> PeerAddress | None:
        if self._transport is None:
            return None
        sockname = self._transport.get_extra_info("sockname")
        return (sockname[0], sockname[1]) if sockname else None

    def set_discovered(self, peers: Iterable[PeerAddress]) -> None:
        """The peers discovery found (IP addresses), replacing the last ones it found."""
        self._discovered = frozenset(peers)
        self._update_peers()

    # -- sending -----------------------------------------------------------------------------

    def announce(self, backend: str, cost: float) -> None:
        """Tell every peer this replica just sent a request of `cost` normalised steps to `backend`."""
        transport, peers = self._transport, self._peers
        if transport is None or not peers:
            return
        data = encode_dispatch(PeerDispatch(self.sender, backend, cost))
        errors_before = self._send_errors
        for address in peers:
            try:
                transport.sendto(data, address)  # asyncio reports a failed send to error_received
            except OSError as exc:  # and should another event loop raise it instead: counted all the same
                self.error_received(exc)
        sent = len(peers) - (self._send_errors - errors_before)
        if sent:
            self.count("sent", "ok", sent)

    # -- asyncio.DatagramProtocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (not always a DatagramTransport subclass: CPython 3.11's is not).
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._family = sock.family

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        why = self._apply(data, (addr[0], addr[1]))
        if why is not None:
            log.debug("datagram from %s:%s ignored: %s", addr[0], addr[1], why)
            self.count("received", "ignored", 1)
            return
        self.count("received", "ok", 1)

    def error_received(self, exc: Exception) -> None:
        # A send that failed (no route, a broadcast address, a full buffer): counted, never raised.
        # A request must not fail because a peer cannot be told about it.
        log.debug("announcement not sent: %s", exc)
        self._send_errors += 1
        self.count("sent", "error", 1)

    def _apply(self, data: bytes, source: PeerAddress) -> str | None:
        """Count the announcement in `data` from `source` against its backend; None when it was
        applied, else why not."""
        if source not in self._peer_set:
            return "not from a peer"
        message = decode_dispatch(data)
        if message is None:
            return "not a version-1 announcement, or over the size limit"
        if message.sender == self.sender:
            return "this replica's own announcement (is it listed among its peers?)"
        state = self.pool.get(message.backend)
        if state is None:
            return f"unknown backend {message.backend!r}"
        state.peer_dispatch(message.cost, time.monotonic())
        return None

    # -- peers' addresses ------------------------------------------------------------------

    def _update_peers(self) -> None:
        peers = self._discovered.union(*self._resolved.values())
        self._peers = tuple(sorted(peers))
        self._peer_set = frozenset(peers)

    async def _keep_resolving(self) -> None:
        while True:
            await asyncio.sleep(RESOLVE_INTERVAL)
            await self._resolve_static()

    async def _resolve_static(self) -> None:
        """The `--peers` names as IP addresses of the socket's family; a name that does not
        resolve keeps its last addresses (DNS down is not a peer gone)."""
        loop = asyncio.get_running_loop()
        for host, port in self.static_peers:
            try:
                infos = await loop.getaddrinfo(host, port, family=self._family, type=socket.SOCK_DGRAM)
            except OSError as exc:
                log.warning("peer %s:%d does not resolve (its last addresses kept): %s", host, port, exc)
                continue
            self._resolved[(host, port)] = frozenset((str(info[4][0]), int(info[4][1])) for info in infos)
        self._update_peers()
