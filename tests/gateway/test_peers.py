"""Dispatch sharing between gateway replicas: the wire format, peer addresses, and two links on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from sdxlpool.gateway.backends import Backend
from sdxlpool.gateway.peers import (
    MAX_DATAGRAM_BYTES,
    PeerDispatch,
    PeerLink,
    decode_dispatch,
    encode_dispatch,
    parse_peer_address,
)
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.worker_metrics import WorkerMetrics

# -- the wire format ---------------------------------------------------------------------------------


def test_an_announcement_is_compact_versioned_json_and_decodes_to_itself() -> None:
    message = PeerDispatch("5f0c1a2b", "h100-1", 20.0)
    data = encode_dispatch(message)
    assert data == b'{"v":1,"s":"5f0c1a2b","b":"h100-1","c":20.0}'
    assert decode_dispatch(data) == message


def _json(**fields: object) -> bytes:
    return json.dumps({"v": 1, "s": "abcd", "b": "w1", "c": 10.0, **fields}).encode()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(_json(), PeerDispatch("abcd", "w1", 10.0), id="plain"),
        pytest.param(_json(c=25), PeerDispatch("abcd", "w1", 25.0), id="integer-cost"),
        pytest.param(_json(later="field"), PeerDispatch("abcd", "w1", 10.0), id="unknown-key-ignored"),
        pytest.param(_json(b="ü-1"), PeerDispatch("abcd", "ü-1", 10.0), id="non-ascii-name"),
        pytest.param(_json(v=2), None, id="another-version"),
        pytest.param(_json(v=True), None, id="version-true"),
        pytest.param(_json(v="1"), None, id="version-text"),
        pytest.param(_json(b=""), None, id="empty-backend"),
        pytest.param(_json(b=7), None, id="backend-not-text"),
        pytest.param(_json(s=None), None, id="sender-missing"),
        pytest.param(_json(c=-1.0), None, id="negative-cost"),
        pytest.param(_json(c="10"), None, id="cost-text"),
        pytest.param(_json(c=True), None, id="cost-bool"),
        pytest.param(b'{"v":1,"s":"a","b":"w1","c":NaN}', None, id="cost-nan"),
        pytest.param(b'{"v":1,"s":"a","b":"w1","c":Infinity}', None, id="cost-infinite"),
        pytest.param(b"[1, 2]", None, id="not-an-object"),
        pytest.param(b"{not json", None, id="not-json"),
        pytest.param(b"\xff\xfe\x00", None, id="not-utf8"),
        pytest.param(b"", None, id="empty"),
        pytest.param(_json(b="w" * MAX_DATAGRAM_BYTES), None, id="oversized"),
    ],
)
def test_decode_dispatch(data: bytes, expected: PeerDispatch | None) -> None:
    assert decode_dispatch(data) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.7:8081", ("10.0.0.7", 8081)),
        (" gateway-b.sdxl.svc:8081 ", ("gateway-b.sdxl.svc", 8081)),
        ("[::1]:8081", ("::1", 8081)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_peer_address(text: str, expected: tuple[str, int]) -> None:
    assert parse_peer_address(text) == expected


@pytest.mark.parametrize("text", ["gateway-b", "gateway-b:", ":8081", "gateway-b:0", "gateway-b:65536",
                                  "gateway-b:http", "::1:8081", "[]:8081", "a b:8081", ""])
def test_parse_peer_address_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="must be host:port"):
        parse_peer_address(text)


# -- two links on loopback ----------------------------------------------------------------------------


def _pool(*names: str, kind: str = "sdxlpool") -> BackendPool:
    pool = BackendPool()
    pool.update([Backend(name, f"http://{name}.test:7860", "a100", kind=kind) for name in names])  # type: ignore[arg-type]
    for state in pool.states():  # scraped long ago: whatever a peer announces now is unseen
        state.metrics = WorkerMetrics(queue_depth=0, inflight=0, pending_steps=0, step_seconds=0.1, ready=True,
                                      gpu_model="a100")
        state.scraped_at = -100.0
    return pool


class Replica:
    """One link with its pool and the counts it reported."""

    def __init__(self, pool: BackendPool) -> None:
        self.pool = pool
        self.counts: Counter[tuple[str, str]] = Counter()
        self.link: PeerLink | None = None

    def count(self, direction: str, outcome: str, how_many: int) -> None:
        self.counts[direction, outcome] += how_many

    async def open(self, peers: list[tuple[str, int]] = ()) -> PeerLink:  # type: ignore[assignment]
        self.link = await PeerLink.open(self.pool, self.count, host="127.0.0.1", port=0, peers=peers)
        return self.link

    @property
    def address(self) -> tuple[str, int]:
        assert self.link is not None and self.link.local_address is not None
        return self.link.local_address

    def unseen(self, name: str) -> float:
        state = self.pool.get(name)
        assert state is not None
        return state.unseen_cost(0.0)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Let the loop run until `condition()` holds (datagrams on loopback arrive within a few loop turns)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.001)


@contextlib.asynccontextmanager
async def pair() -> AsyncIterator[tuple[Replica, Replica]]:
    """Replicas a and b, each the other's peer (b by --peers, a by discovery). Not a fixture: the
    links must live on the test's own event loop."""
    a, b = Replica(_pool("w1", "w2")), Replica(_pool("w1", "w2"))
    await a.open()
    await b.open(peers=[a.address])
    assert a.link is not None and b.link is not None
    a.link.set_discovered([b.address])
    try:
        yield a, b
    finally:
        a.link.close()
        b.link.close()


async def test_an_announcement_counts_on_the_peer_and_not_on_the_sender() -> None:
    async with pair() as (a, b):
        a.link.announce("w1", 20.0)
        await until(lambda: b.counts["received", "ok"] == 1)
        assert (b.unseen("w1"), b.unseen("w2"), a.unseen("w1")) == (20.0, 0.0, 0.0)
        assert b.pool.get("w1").inflight == 0  # not b's own request
        b.link.announce("w2", 5.0)
        await until(lambda: a.counts["received", "ok"] == 1)
        assert a.unseen("w2") == 5.0
        assert a.counts == {("sent", "ok"): 1, ("received", "ok"): 1}
        assert b.counts == {("sent", "ok"): 1, ("received", "ok"): 1}


async def test_what_is_not_a_peers_announcement_is_ignored_and_counted() -> None:
    async with pair() as (a, b):
        a.link.announce("w9", 20.0)  # a backend b does not know
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.sendto(encode_dispatch(PeerDispatch("x", "w1", 20.0)), b.address)  # not from a peer
        b.link.set_discovered([a.address, b.address])  # b finds itself among its peers
        b.link.announce("w2", 1.0)  # to a, and to itself
        await until(lambda: b.counts["received", "ignored"] == 3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as impostor:  # sends from a peer's address
            b.link.set_discovered([a.address, ("127.0.0.1", _bound_port(impostor))])
            impostor.sendto(b"{not json", b.address)
            impostor.sendto(_json(v=2), b.address)
            impostor.sendto(b"x" * (MAX_DATAGRAM_BYTES + 1), b.address)
            await until(lambda: b.counts["received", "ignored"] == 6)
        assert b.unseen("w1") == b.unseen("w2") == 0.0
        assert b.counts["received", "ok"] == 0


def _bound_port(sock: socket.socket) -> int:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


async def test_a_peer_that_cannot_be_sent_to_is_counted_never_raised() -> None:
    a = Replica(_pool("w1"))
    await a.open()
    assert a.link is not None
    down = Replica(_pool("w1"))
    await down.open()
    address = down.address
    down.link.close()  # nothing listens there any more: UDP does not notice
    a.link.set_discovered([("255.255.255.255", 9), address])  # a broadcast without SO_BROADCAST: refused at once
    a.link.announce("w1", 20.0)
    a.link.close()
    assert a.counts == {("sent", "error"): 1, ("sent", "ok"): 1}


async def test_an_a1111_backend_ignores_announcements() -> None:
    a = Replica(_pool("w1"))
    plain = Replica(_pool("w1", kind="a1111"))
    await plain.open()
    await a.open(peers=[plain.address])
    plain.link.set_discovered([a.address])
    a.link.announce("w1", 20.0)
    await until(lambda: plain.counts["received", "ok"] == 1)
    assert plain.unseen("w1") == 0.0  # no scrape would ever clear it
    a.link.close()
    plain.link.close()


async def test_peers_by_name_are_resolved() -> None:
    a, b = Replica(_pool("w1")), Replica(_pool("w1"))
    await a.open()
    await b.open(peers=[("localhost", a.address[1])])
    assert b.link.peers == (a.address,)
    a.link.set_discovered([b.address])
    b.link.announce("w1", 3.0)
    await until(lambda: a.unseen("w1") == 3.0)
    a.link.close()
    b.link.close()
