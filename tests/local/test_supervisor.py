"""`up`'s Supervisor with processes joining and leaving at run time (real sim-worker processes): an
added one is started and reported ready; a removed one drains its job, exits 0 and stays stopped."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx

from sdxlpool.local.supervisor import Supervised, Supervisor
from sdxlpool.testing.ports import connection_refused, free_port


def _sim(name: str, port: int, log_dir: Path) -> Supervised:
    argv = (sys.executable, "-m", "sdxlpool", "sim-worker", "--gpu-model", "A100", "--step-seconds", "0.1",
            "--port", str(port), "--no-warmup", "--worker-name", name)
    return Supervised(name, argv, {"SDXLPOOL_LOG_LEVEL": "WARNING"}, f"http://127.0.0.1:{port}/readyz",
                      log_dir / f"{name}.log")


def test_added_processes_start_and_removed_ones_drain_and_stay_stopped(tmp_path: Path) -> None:
    lines: list[str] = []
    first_port, added_port = free_port(), free_port()

    async def scenario() -> tuple[int | None, int, set[str]]:
        supervisor = Supervisor(lines.append, backoff_min=0.1)
        first, added = _sim("first", first_port, tmp_path), _sim("added", added_port, tmp_path)
        running = asyncio.create_task(supervisor.run([first], lambda: lines.append("all ready")))
        try:
            await asyncio.wait_for(first.ready.wait(), 30)
            supervisor.add(added)
            await asyncio.wait_for(added.ready.wait(), 30)
            assert supervisor.names == {"first", "added"}
            async with httpx.AsyncClient(timeout=30) as client:
                job = asyncio.create_task(client.post(f"http://127.0.0.1:{added_port}/sdapi/v1/txt2img",
                                                      json={"steps": 20, "width": 1024, "height": 1024}))
                while (await client.get(f"http://127.0.0.1:{added_port}/sdapi/v1/progress")).json()["progress"] <= 0:
                    await asyncio.sleep(0.05)  # the 2 s job is running
                code = await supervisor.remove("added", timeout=30)
                answered = (await job).status_code
            names = supervisor.names
            await asyncio.sleep(0.5)  # a restart would have begun by now (backoff 0.1 s)
            assert connection_refused(added_port), "a removed process is not started again"
        finally:
            supervisor.stop()
            await asyncio.wait_for(running, 30)
        return code, answered, names

    code, answered, names = asyncio.run(scenario())
    assert code == 0 and answered == 200
    assert names == {"first"}
    assert "all ready" in lines and not any("exited" in line for line in lines), lines
    assert connection_refused(first_port)
