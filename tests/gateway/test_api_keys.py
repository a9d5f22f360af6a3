"""Optional API keys: hashed at rest, checked in constant time, with per-key rates and priority."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import yaml

from sdxlpool.errors import ConfigError
from sdxlpool.gateway.admission import Admission
from sdxlpool.gateway.api_keys import ApiKeys, Unauthorized, hash_key, load_api_keys, new_key, presented_key
from sdxlpool.gateway.pool import BackendPool
from sdxlpool.gateway.routing.testing import fake_state
from tests.gateway.conftest import body, start_gateway, write_backends
from tests.gateway.ws import websocket
from tests.polling import wait_for


def write_keys(path: Path, entries: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"keys": entries}))
    return path


def test_keys_file_keeps_only_hashes_and_names_bad_entries(tmp_path: Path) -> None:
    key = new_key()
    assert key.startswith("sdxl-") and len(key) > 40 and new_key() != key
    keys = load_api_keys(write_keys(tmp_path / "k.yaml", [
        {"name": "studio", "sha256": hash_key(key), "ratePerMinute": 5, "burst": 2, "priority": 3}]))
    caller = keys.caller(key, "10.0.0.1")
    assert (caller.identity, caller.priority, caller.rate_per_minute, caller.burst) == ("key:studio", 3, 5.0, 2)
    for wrong in (None, "", key + "x", hash_key(key)):  # the stored hash itself is not a key
        with pytest.raises(Unauthorized):
            keys.caller(wrong, "10.0.0.1")
    assert ApiKeys([]).caller(None, "10.0.0.1").identity == "addr:10.0.0.1"
    for entry, mention in (
        ({"name": "a", "sha256": key}, "sha256"),  # the key itself, not its hash
        ({"name": "a"}, "sha256"),
        ({"sha256": hash_key(key)}, "name"),
        ({"name": "a", "sha256": hash_key(key), "priority": "high"}, "priority"),
        ({"name": "a", "sha256": hash_key(key), "ratePerMinute": -1}, "ratePerMinute"),
        ({"name": "a", "sha256": hash_key(key), "secret": "x"}, "secret"),
    ):
        with pytest.raises(ConfigError, match=rf"keys\[0\]: {mention}"):
            load_api_keys(write_keys(tmp_path / "bad.yaml", [entry]))


def test_presented_key_from_bearer_header_or_query() -> None:
    assert presented_key({"authorization": "Bearer abc"}) == "abc"
    assert presented_key({"authorization": "bearer  abc "}) == "abc"
    assert presented_key({"x-api-key": "def"}) == "def"
    assert presented_key({}, {"api_key": "ghi"}) == "ghi"
    assert presented_key({"authorization": "Basic xyz"}) is None  # not base64 of user:pass
    # A1111 clients (Open WebUI, SillyTavern) know only A1111's --api-auth: the password is the key.
    assert presented_key({"authorization": "Basic " + base64.b64encode(b"me:sdxl-key").decode()}) == "sdxl-key"
    assert presented_key({"authorization": "Basic " + base64.b64encode(b":").decode()}) is None  # no auth set


def test_api_key_command_prints_an_entry_the_gateway_accepts(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "sdxlpool", "api-key", "studio", "--rate-per-minute", "30",
                             "--priority", "2"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    key = next(line.split()[-1] for line in result.stderr.splitlines() if "sdxl-" in line)
    assert key not in result.stdout  # only the hash goes to the file
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n" + result.stdout)
    caller = load_api_keys(path).caller(key, "")
    assert (caller.identity, caller.rate_per_minute, caller.priority) == ("key:studio", 30.0, 2)


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the event loop run until `condition()` holds (TimeoutError after `timeout` seconds)."""
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_a_higher_priority_waiter_is_admitted_first() -> None:
    pool = BackendPool()
    full = fake_state("w", pending_steps=1000, step_seconds=0.1, scraped_at=time.monotonic())
    pool.update([full.backend])
    state = pool.get("w")
    state.metrics, state.scraped_at = full.metrics, full.scraped_at
    admission = Admission(pool, backlog_seconds=1.0, queue_size=10, queue_deadline=5.0)
    order: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await admission.admit((), priority)
        order.append(name)
        state.metrics = dataclasses.replace(state.metrics, pending_steps=1000)  # it took the room

    low = asyncio.create_task(wait("low", 0))
    await until(lambda: admission.waiting == 1)
    high = asyncio.create_task(wait("high", 5))
    await until(lambda: admission.waiting == 2)
    assert order == []
    state.metrics = dataclasses.replace(state.metrics, pending_steps=0)  # room for one
    await until(lambda: order)
    assert order == ["high"]
    state.metrics = dataclasses.replace(state.metrics, pending_steps=0)
    await asyncio.wait_for(asyncio.gather(low, high), 2)
    assert order == ["high", "low"]


async def test_a_waiter_for_a_busy_model_does_not_block_another_model() -> None:
    pool = BackendPool()
    now = time.monotonic()
    busy, idle = fake_state("a", "A100", pending_steps=1000, scraped_at=now), fake_state("r", "RTX-3090", scraped_at=now)
    pool.update([busy.backend, idle.backend])
    for fake in (busy, idle):
        live = pool.get(fake.name)
        live.metrics, live.scraped_at = fake.metrics, fake.scraped_at
    admission = Admission(pool, backlog_seconds=1.0, queue_size=10, queue_deadline=5.0)
    blocked = asyncio.create_task(admission.admit(("a100",), 9))
    await until(lambda: admission.waiting == 1)
    assert await asyncio.wait_for(admission.admit(("rtx-3090",), 0), 1) == 0.0
    blocked.cancel()


@pytest.mark.parametrize("sims", [[("fast", 0.01)]], indirect=True)
def test_gateway_with_keys(sims, tmp_path: Path) -> None:
    studio, hobby = new_key(), new_key()
    keys = write_keys(tmp_path / "keys.yaml", [
        {"name": "studio", "sha256": hash_key(studio)},
        {"name": "hobby", "sha256": hash_key(hobby), "ratePerMinute": 30, "burst": 1}])
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, api_keys_file=keys) as gateway:
        gateway.wait_ready()
        url = gateway.url + "/sdapi/v1/txt2img"

        def post(**headers: str) -> httpx.Response:
            return httpx.post(url, json=body(steps=2), headers=headers, timeout=30)

        missing = post()
        assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        assert post(Authorization="Bearer nope").status_code == 401
        assert post(Authorization=f"Bearer {studio}").status_code == 200
        assert post(**{"X-API-Key": studio}).status_code == 200
        assert post(Authorization="Basic " + base64.b64encode(f"user:{studio}".encode()).decode()).status_code == 200
        assert post(Authorization="Basic " + base64.b64encode(b"user:wrong").decode()).status_code == 401
        # hobby's own limit: one, then 429; studio is not limited by it.
        assert post(Authorization=f"Bearer {hobby}").status_code == 200
        limited = post(Authorization=f"Bearer {hobby}")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
        assert post(Authorization=f"Bearer {studio}").status_code == 200
        native = httpx.post(gateway.url + "/v1/generate", json=body(steps=2), timeout=30)
        assert native.status_code == 401
        # Read-only pool endpoints stay open; the WebSocket checks the key per generation.
        assert httpx.get(gateway.url + "/sdapi/v1/samplers", timeout=10).status_code == 200
        with websocket(gateway.url) as ws:
            ws.send(body(steps=2))
            assert ws.until_final()[-1]["status"] == 401
        with websocket(gateway.url, f"api_key={studio}") as ws:
            ws.send(body(steps=2))
            assert ws.until_final()[-1]["event"] == "done"
        # Keys are re-read when the file changes: revoke studio.
        write_keys(keys, [{"name": "hobby", "sha256": hash_key(hobby)}])
        wait_for(lambda: post(Authorization=f"Bearer {studio}").status_code == 401, timeout=15, interval=0.2)
        assert 'outcome="unauthorized"' in httpx.get(gateway.url + "/metrics", timeout=10).text
