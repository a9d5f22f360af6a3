"""CPU cost of dispatch sharing between gateway replicas (sdxlpool/gateway/peers.py), on loopback.

Two sides, each measured in its own process so one's CPU is not billed to the other:

* send: `PeerLink.announce` in a tight loop to 1 and to 3 peers (bound UDP sockets that nobody
  reads: the kernel drops what overflows, the sender does the same work). Reported per announce
  and per announce per peer, wall and CPU (user + system of this process, the kernel's loopback
  delivery included), over several rounds.
* receive: a `PeerLink` in this process's event loop hears `--count` announcements from a listed
  peer (a child process sending them at `--rate` per second, in bursts of 10: far more than a
  pool's request rate, well under what overflows the socket buffer) and applies each to its
  backend (`BackendState.peer_dispatch`). Reported: CPU of this process per datagram received
  (the event loop's wake-up for each included), and how many arrived; and, apart, the CPU of the
  link's own handling of one datagram (`datagram_received` called directly: decode, check, apply).

    python benchmarks/peer_announce.py [--count 10000] [--rounds 5] [--rate 2000] [--out F]
    python benchmarks/peer_announce.py --smoke      # a second: 200 announcements, 2 rounds
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import socket
import subprocess
import sys
import time
from typing import Any

from sdxlpool.gateway.backends import Backend
from sdxlpool.gateway.peers import PeerDispatch, PeerLink, encode_dispatch
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.worker_metrics import WorkerMetrics
from sdxlpool.testing.pool import bench_arguments, write_report
from sdxlpool.testing.ports import free_udp_port
from sdxlpool.testing.stats import spread

SMOKE = {"count": 200, "rounds": 2}
PEER_COUNTS = (1, 3)
BACKEND = "h100-1"  # a pod-name-like backend name, as announced in a pool
BURST = 10  # datagrams the child sends at once

# The child that plays the other replica: sends `count` announcements from 127.0.0.1:`source`, at
# `rate` per second in bursts of BURST (on a schedule: a late burst does not delay the next ones).
_SENDER = """
import socket, sys, time
count, source, target, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
data = sys.stdin.buffer.read()
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.bind(("127.0.0.1", source))
    started = time.monotonic()
    for i in range(count):
        if i % BURST == 0:
            time.sleep(max(0.0, started + i / rate - time.monotonic()))
        sock.sendto(data, ("127.0.0.1", target))
""".replace("BURST", str(BURST))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10_000, help="announcements per round (send) and in all (receive)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the send measurement")
    parser.add_argument("--rate", type=float, default=2000.0, help="announcements per second the receiver hears")
    args = bench_arguments(parser, SMOKE)
    send = asyncio.run(measure_send(args.count, args.rounds))
    receive = asyncio.run(measure_receive(args.count, args.rate))
    receive["apply_cpu_us_per_datagram"] = spread(asyncio.run(measure_apply(args.count, args.rounds)))
    for peers, numbers in send.items():
        print(f"send to {peers} peer(s): {numbers['cpu_us_per_announce_per_peer']['median']:.2f} us CPU per announce "
              f"per peer ({numbers['wall_us_per_announce']['median']:.2f} us wall per announce)")
    print(f"receive: {receive['cpu_us_per_datagram']:.2f} us CPU per datagram, {receive['received']}/{receive['sent']}"
          f" arrived; the link's own handling {receive['apply_cpu_us_per_datagram']['median']:.2f} us of it")
    write_report(args.out, smoke=args.smoke, count=args.count, rounds=args.rounds, rate=args.rate, backend=BACKEND,
                 datagram_bytes=len(_announcement()), send=send, receive=receive)
    return 0


def _announcement() -> bytes:
    return encode_dispatch(PeerDispatch("5f0c1a2b", BACKEND, 20.0))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _pool() -> BackendPool:
    pool = BackendPool()
    pool.update([Backend(BACKEND, "http://127.0.0.1:9", "h100")])
    state = pool.get(BACKEND)
    assert state is not None
    state.metrics = WorkerMetrics(queue_depth=0, inflight=0, pending_steps=0, step_seconds=0.1, ready=True,
                                  gpu_model="h100")
    state.scraped_at = time.monotonic()  # every announcement after it counts (and is kept, up to the cap)
    return pool


async def measure_send(count: int, rounds: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for peer_count in PEER_COUNTS:
        sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(peer_count)]
        for sink in sinks:
            sink.bind(("127.0.0.1", 0))
        link = await PeerLink.open(_pool(), lambda *_: None, host="127.0.0.1", port=0)
        link.set_discovered([sink.getsockname() for sink in sinks])
        wall, cpu = [], []
        try:
            for _ in range(rounds):
                started, cpu_started = time.perf_counter(), _cpu_seconds()
                for _ in range(count):
                    link.announce(BACKEND, 20.0)
                wall.append((time.perf_counter() - started) / count * 1e6)
                cpu.append((_cpu_seconds() - cpu_started) / count * 1e6)
                await asyncio.sleep(0)
        finally:
            link.close()
            for sink in sinks:
                sink.close()
        results[str(peer_count)] = {
            "wall_us_per_announce": spread(wall),
            "cpu_us_per_announce": spread(cpu),
            "cpu_us_per_announce_per_peer": spread(value / peer_count for value in cpu),
        }
    return results


async def measure_receive(count: int, rate: float) -> dict[str, Any]:
    source = free_udp_port()
    received = 0

    def counted(direction: str, outcome: str, how_many: int) -> None:
        nonlocal received
        if (direction, outcome) == ("received", "ok"):
            received += how_many

    link = await PeerLink.open(_pool(), counted, host="127.0.0.1", port=0, peers=[("127.0.0.1", source)])
    address = link.local_address
    assert address is not None
    sender = subprocess.Popen([sys.executable, "-c", _SENDER, str(count), str(source), str(address[1]), str(rate)],
                              stdin=subprocess.PIPE)
    assert sender.stdin is not None
    cpu_started, started = _cpu_seconds(), time.perf_counter()  # after the fork: the child waits for its stdin
    sender.stdin.write(_announcement())
    sender.stdin.close()
    last, last_change = 0, time.monotonic()
    while received < count and time.monotonic() - last_change < 2.0:  # until all arrived, or none for 2 s
        await asyncio.sleep(0.01)
        if received != last:
            last, last_change = received, time.monotonic()
    cpu = _cpu_seconds() - cpu_started
    wall = time.perf_counter() - started
    sender.wait(timeout=30)
    link.close()
    return {"sent": count, "received": received, "cpu_us_per_datagram": round(cpu / max(received, 1) * 1e6, 3),
            "wall_seconds": round(wall, 3), "rate_per_second": rate, "burst": BURST}


async def measure_apply(count: int, rounds: int) -> list[float]:
    """CPU microseconds of `PeerLink.datagram_received` per announcement, no socket involved."""
    source = ("127.0.0.1", 9)
    link = PeerLink(_pool(), lambda *_: None)
    link.set_discovered([source])
    data = _announcement()
    results = []
    for _ in range(rounds):
        cpu_started = _cpu_seconds()
        for _ in range(count):
            link.datagram_received(data, source)
        results.append((_cpu_seconds() - cpu_started) / count * 1e6)
    return results


if __name__ == "__main__":
    sys.exit(main())
