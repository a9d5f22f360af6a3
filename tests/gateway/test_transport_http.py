"""`HttpWorkerTransport` against a real sim-worker: the three calls the attempt loop makes, and its errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from sdxlpool.gateway._bulk import BulkClient
from sdxlpool.gateway.backends import Backend
from sdxlpool.gateway.kinds import TXT2IMG
from sdxlpool.gateway.transport import HttpWorkerTransport, TransportFailure, TransportTimeout
from sdxlpool.testing.ports import free_port
from tests.gateway.conftest import body


def backend_at(url: str) -> Backend:
    return Backend(name="w", url=url, gpu="a100", provider="", location="", kind="sdxlpool", price_per_hour=None)


@asynccontextmanager
async def http_transport() -> AsyncIterator[HttpWorkerTransport]:
    """Made inside the test's own event loop (both clients are bound to the loop they first run in)."""
    async with httpx.AsyncClient() as client:
        bulk = BulkClient(max_connections=10, connect_timeout=2.0)
        try:
            yield HttpWorkerTransport(client, bulk)
        finally:
            await bulk.aclose()


@pytest.mark.parametrize("sims", [[("hung", 0.001, "--hang-rate", "1")]], indirect=True)
async def test_send_progress_interrupt_and_timeout(sims) -> None:
    async with http_transport() as transport:
        await _send_progress_interrupt_and_timeout(transport, backend_at(sims[0].url))


async def _send_progress_interrupt_and_timeout(transport: HttpWorkerTransport, worker: Backend) -> None:
    with pytest.raises(TransportTimeout):  # a hung job never answers
        await transport.send(worker, TXT2IMG.path, body(seed=1), timeout=0.3)

    sending = asyncio.ensure_future(transport.send(worker, TXT2IMG.path, {**body(seed=2), "force_task_id": "t-2"},
                                                           timeout=30))
    for _ in range(100):  # /progress names our job once it runs
        answer = await transport.read_progress(worker, timeout=2)
        if answer is not None and answer["state"].get("job") == "t-2":
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"the job never showed on /progress: {answer}")
    await transport.interrupt(worker)  # ends the hung job: the answer comes back
    status, content = await asyncio.wait_for(sending, timeout=10)
    assert status == 200 and json.loads(content)["images"]


async def test_no_worker_is_a_transport_failure_and_no_progress() -> None:
    nobody = backend_at(f"http://127.0.0.1:{free_port()}")
    async with http_transport() as transport:
        with pytest.raises(TransportFailure, match="Connect"):
            await transport.send(nobody, TXT2IMG.path, body(), timeout=5)
        assert await transport.read_progress(nobody, timeout=1) is None
        await transport.interrupt(nobody)  # best effort: never raises


def test_forwarded_bodies_are_json_whatever_a_client_put_in_them() -> None:
    """orjson writes the body unless it cannot (an integer past 64 bits in an extension's field):
    then the standard library does, so such a request is forwarded, never a 500."""
    from sdxlpool.gateway._bulk import _json_bytes

    body = {"prompt": "x", "init_images": ["QUFB" * 1000], "my_extension": {"big": 10**30, "ok": [1.5, None]}}
    assert json.loads(_json_bytes(body)) == body
    assert json.loads(_json_bytes({"seed": 7, "prompt": "é"})) == {"seed": 7, "prompt": "é"}
