"""`sim-worker` on the command line: flag checks (exit 2, one line), a real process end to end, and an
import that stays light (no torch, no diffusers, not even while serving)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from sdxlpool.errors import ConfigError
from sdxlpool.sim import add_parser, run_sim_worker
from sdxlpool.testing.ports import free_port
from tests.sim.conftest import wait_for

HEAVY = ("torch", "diffusers", "transformers")
WEB = ("fastapi", "starlette", "uvicorn", "httpx")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="sdxlpool")
    add_parser(root.add_subparsers(dest="command"))
    return root


@pytest.mark.parametrize(("argv", "message"), [
    (["--step-seconds", "0.1"], "the following arguments are required: --gpu-model"),
    (["--gpu-model", "A100"], "the following arguments are required: --step-seconds"),
    (["--gpu-model", " ", "--step-seconds", "1"], "argument --gpu-model: must not be empty"),
    (["--gpu-model", "A100", "--step-seconds", "-1"], "argument --step-seconds: must be 0 or more seconds"),
    (["--gpu-model", "A100", "--step-seconds", "nan"], "argument --step-seconds: must be a finite number"),
    (["--gpu-model", "A100", "--step-seconds", "1", "--fail-rate", "1.5"], "argument --fail-rate: must be between 0 and 1"),
    (["--gpu-model", "A100", "--step-seconds", "1", "--hang-rate", "x"], "argument --hang-rate: not a number: 'x'"),
    (["--gpu-model", "A100", "--step-seconds", "1", "--image-bytes", "-5"], "argument --image-bytes: must be 0 or more"),
    (["--gpu-model", "A100", "--step-seconds", "1", "--max-queue", "1.5"], "argument --max-queue: not an integer"),
    (["--gpu-model", "A100", "--step-seconds", "1", "--port", "70000"], "argument --port: must be between 0 and 65535"),
])
def test_bad_flags_exit_2_with_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["sim-worker", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_help_names_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["sim-worker", "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--gpu-model", "--step-seconds", "--overhead-seconds", "--fail-rate", "--hang-rate", "--seed",
                 "--image-bytes", "--max-queue", "--host", "--port", "--provider", "--location", "--no-warmup"):
        assert flag in text


def test_settings_the_flags_cannot_check_alone_are_config_errors() -> None:
    args = parser().parse_args(["sim-worker", "--gpu-model", "A100", "--step-seconds", "1",
                                "--fail-rate", "0.6", "--hang-rate", "0.6"])
    with pytest.raises(ConfigError, match=r"--fail-rate \+ --hang-rate is 1.2; at most 1"):
        run_sim_worker(args)
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        args = parser().parse_args(["sim-worker", "--gpu-model", "A100", "--step-seconds", "1", "--port", str(port)])
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            run_sim_worker(args)


def _python(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDXLPOOL_LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL, **kwargs)


def test_a_real_process_serves_and_stops_cleanly(tmp_path: Path) -> None:
    bad = _python("-m", "sdxlpool.sim", "--gpu-model", "A100", "--step-seconds", "-1")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.splitlines() == [
        "sdxlpool sim-worker: error: argument --step-seconds: must be 0 or more seconds, got -1 (see --help)"]

    port = free_port()
    log = tmp_path / "sim.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "sdxlpool.sim", "--gpu-model", "RTX 3090", "--step-seconds", "0.01",
             "--port", str(port), "--worker-name", "sim-1", "--provider", "P", "--location", "L", "--seed", "3",
             "--image-bytes", "5000"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "SDXLPOOL_LOG_LEVEL": "WARNING"})
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(url + "/readyz", timeout=1).status_code == 200
            except httpx.TransportError:
                assert process.poll() is None, log.read_text()
                return False

        wait_for(ready, timeout=20, interval=0.05)
        response = httpx.post(url + "/sdapi/v1/txt2img", json={"steps": 3, "width": 512, "height": 512}, timeout=10)
        assert response.status_code == 200
        placement = json.loads(response.json()["info"])["sdxlpool"]
        assert {k: placement[k] for k in ("gpu_model", "provider", "location", "worker")} == {
            "gpu_model": "rtx-3090", "provider": "P", "location": "L", "worker": "sim-1"}
        assert len(response.json()["images"][0]) >= 5000 * 4 // 3
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def test_importing_and_serving_never_loads_torch_or_diffusers() -> None:
    script = textwrap.dedent("""
        import json, sys, time
        import sdxlpool.sim
        imported = sorted(sys.modules)
        from starlette.testclient import TestClient
        from sdxlpool.sim import SimSettings, create_sim_app

        app = create_sim_app(SimSettings(gpu_model="A100", step_seconds=0, image_bytes=1000))
        with TestClient(app) as client:
            deadline = time.monotonic() + 10
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert client.post("/sdapi/v1/txt2img", json={"steps": 2}).status_code == 200
            assert client.get("/sdapi/v1/samplers").status_code == 200
        print(json.dumps({"imported": imported, "served": sorted(sys.modules)}))
    """)
    result = _python("-c", script)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    top = {kind: {name.split(".")[0] for name in names} for kind, names in modules.items()}
    assert not top["imported"] & {*HEAVY, *WEB}, "the CLI imports sdxlpool.sim to build its parser"
    assert not top["served"] & set(HEAVY)
