"""Slow and oversized clients against a real gateway (CLI process, default limits) over 127.0.0.1.

    python reliability/slow_clients.py                    # 200 slow-loris connections, 10 MB bodies
    python reliability/slow_clients.py --slow 500 --requests 100

While `--slow` connections dribble request headers a byte a second (and as many stall a body
half-way), `--requests` ordinary txt2img requests go through the gateway to a sim-worker; the
script prints their latency, how long the server took to drop each slow connection (header
deadline: 10 s; body timeout: 30 s, answered 408), and the time to answer a 10 MB body (413).
Exit status 1 if an ordinary request failed or a slow connection was never dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sdxlpool.testing.pool import LocalPool, WorkerSpec
from sdxlpool.testing.stats import percentile

HEADERS = b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 4000


async def dribble_headers(host: str, port: int, limit: float) -> float | None:
    """Seconds until the server closed the connection; None if it was still open after `limit`."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    try:
        for byte in HEADERS:
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                if await asyncio.wait_for(reader.read(1), 1.0) == b"":
                    return time.monotonic() - started
            except asyncio.TimeoutError:
                pass
            if time.monotonic() - started > limit:
                return None
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()
    return None


async def stall_body(host: str, port: int, limit: float) -> tuple[float | None, bytes]:
    """Headers promising 1000 bytes, 10 of them sent: seconds until the server answered, and what."""
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1000\r\n\r\n{\"prompt\":")
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(200), limit)
        return time.monotonic() - started, answer.split(b"\r\n", 1)[0]
    except asyncio.TimeoutError:
        return None, b""
    finally:
        writer.close()


async def ordinary(url: str, count: int) -> tuple[list[float], int]:
    latencies, failed = [], 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(count):
            started = time.monotonic()
            response = await client.post("/sdapi/v1/txt2img", json={"prompt": "ok", "steps": 2, "width": 64,
                                                                     "height": 64})
            latencies.append(time.monotonic() - started)
            failed += response.status_code != 200
    return sorted(latencies), failed


async def measure(url: str, slow: int, requests: int, limit: float) -> int:
    host, port = url.removeprefix("http://").split(":")
    baseline, _ = await ordinary(url, requests)
    loris = [asyncio.ensure_future(dribble_headers(host, int(port), limit)) for _ in range(slow)]
    stalled = [asyncio.ensure_future(stall_body(host, int(port), limit)) for _ in range(slow)]
    await asyncio.sleep(1.0)
    during, failed = await ordinary(url, requests)
    dropped = await asyncio.gather(*loris)
    answered = await asyncio.gather(*stalled)

    async with httpx.AsyncClient(timeout=60) as client:
        started = time.monotonic()
        big = await client.post(url + "/sdapi/v1/txt2img", json={"prompt": "x" * (10 * 1024 * 1024)})
        big_seconds = time.monotonic() - started

    def ms(values: list[float], q: float) -> str:
        value = percentile(values, q)
        return "-" if value is None else f"{value * 1000:.0f} ms"

    kept = [t for t in dropped if t is not None]
    timed_out = [t for t, _ in answered if t is not None]
    statuses = sorted({line.decode(errors="replace") for _, line in answered})
    print(f"ordinary txt2img, alone:       p50 {ms(baseline, 50)}, p99 {ms(baseline, 99)}, max {ms(baseline, 100)}")
    print(f"ordinary txt2img, with {slow} header dribblers + {slow} stalled bodies: p50 {ms(during, 50)}, "
          f"p99 {ms(during, 99)}, max {ms(during, 100)}, failed {failed}/{requests}")
    print(f"header dribblers dropped: {len(kept)}/{slow}, after {min(kept, default=0):.1f}-{max(kept, default=0):.1f} s")
    print(f"stalled bodies answered: {len(timed_out)}/{slow}, after {min(timed_out, default=0):.1f}-"
          f"{max(timed_out, default=0):.1f} s, with {statuses}")
    print(f"10 MB body: {big.status_code} {big.json().get('error')} in {big_seconds * 1000:.0f} ms")
    return 0 if failed == 0 and len(kept) == slow and len(timed_out) == slow and big.status_code == 413 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slow", type=int, default=200, help="slow connections of each kind (default 200)")
    parser.add_argument("--requests", type=int, default=50, help="ordinary requests (default 50)")
    parser.add_argument("--limit", type=float, default=60, help="give up on a slow connection after S s (60)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="sdxlpool-slow-"))
    with LocalPool(workdir, [WorkerSpec("sim-1", "A100", 0.0)]) as pool:
        return asyncio.run(measure(pool.url, args.slow, args.requests, args.limit))


if __name__ == "__main__":
    sys.exit(main())
