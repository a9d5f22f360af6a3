"""The `sdxlpool` console script, run for real as a subprocess.

Covers the command-line contract (docs/reference/cli.md): every command has `--help`; a user error exits 2 with
one line on stderr and no traceback; `tiny-model --single-file` writes both layouts; and a worker
serving single-file checkpoints answers txt2img with the same pixels as the in-process worker on the
diffusers folders (same tiny weights: both are written from the default seed 0), then stops cleanly
on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from sdxlpool.testing.ports import free_port
from tests.conftest import TinyModel, start_worker
from tests.worker.imaging import decode, pixels

SCRIPT = Path(sys.executable).with_name("sdxlpool")


def _subcommands() -> list[str]:
    """Every sub-command the parser knows, so a command added later gets its --help checked too."""
    from sdxlpool.cli import _build_parser

    actions = _build_parser()._actions
    return sorted(next(a for a in actions if isinstance(a, argparse._SubParsersAction)).choices)


def sdxlpool(*args: str | Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: install the package (pip install -e .)"
    return subprocess.run([str(SCRIPT), *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The caller's environment with a private cache, so nothing is written to ~/.cache. The CLI's
    processes get this process's torch thread count, not the one thread conftest gives other children:
    `test_single_file_and_folder_workers_draw_the_same_pixels` compares their pixels bit for bit with
    an in-process worker's, and oneDNN picks other kernels for another thread count (1 pixel off by 1)."""
    return {**os.environ, "SDXLPOOL_CACHE": str(tmp_path_factory.mktemp("cli-cache")), "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": str(torch.get_num_threads())}


@pytest.fixture(scope="module")
def cli_model(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sdxlpool tiny-model DIR --single-file`, run once for the whole module."""
    target = tmp_path_factory.mktemp("cli-tiny")
    result = sdxlpool("tiny-model", target, "--single-file", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return target


# --- --help --------------------------------------------------------------------------------------


def test_root_help(env: dict[str, str]) -> None:
    result = sdxlpool("--help", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: sdxlpool")
    for command in _subcommands():
        assert command in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("command", _subcommands())
def test_subcommand_help(env: dict[str, str], command: str) -> None:
    result = sdxlpool(command, "--help", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: sdxlpool {command}")
    assert result.stderr == ""


def test_known_subcommands() -> None:
    assert {"worker", "tiny-model"} <= set(_subcommands())


def test_python_dash_m_and_version(env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-m", "sdxlpool", "--version"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sdxlpool ")


# --- user errors: exit 2, one line, no traceback -------------------------------------------------


def assert_user_error(result: subprocess.CompletedProcess[str], *mentions: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert lines[0].startswith("sdxlpool") and "error:" in lines[0], lines[0]
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["no-such-command"], ["no-such-command"]),
        (["worker", "--port", "abc"], ["--port", "abc"]),
        (["worker"], ["--model"]),
        (["worker", "--model", "/does/not/exist"], ["/does/not/exist"]),
        (["worker", "--model", "{dir}/refiner"], ["--model", "refiner", "--refiner"]),
        (["worker", "--refiner", "{dir}/base", "--model", "{dir}/base"], ["--refiner", "base", "--model"]),
        (["worker", "--model", "{dir}/base", "--max-steps", "0"], ["--max-steps"]),
        (["worker", "--model", "{dir}/base", "--device", "tpu"], ["--device"]),
        (["worker", "--model", "{dir}/base", "--default-steps", "200"], ["default_steps 200", "max_steps 150"]),
    ],
    ids=["unknown-command", "port-not-int", "no-model", "missing-path", "refiner-as-base", "base-as-refiner",
         "max-steps-0", "device-tpu", "default-steps-over-limit"],
)
def test_bad_arguments(env: dict[str, str], cli_model: Path, args: list[str], mentions: list[str]) -> None:
    args = [a.format(dir=cli_model) for a in args]
    assert_user_error(sdxlpool(*args, env=env), *mentions)


@pytest.mark.parametrize("args", [["--max-steps", "0"], ["--device", "tpu"]], ids=["max-steps-0", "device-tpu"])
def test_bad_limits_without_model(env: dict[str, str], args: list[str]) -> None:
    """With --model missing as well, one of the two problems is reported, still on one line."""
    assert_user_error(sdxlpool("worker", *args, env=env))


@pytest.mark.parametrize(
    ("args", "files", "mentions"),
    [
        ([], {}, ["backends file", "Kubernetes"]),
        (["--backends", "{dir}/nope.yaml"], {}, ["nope.yaml"]),
        (["--backends", "{dir}/b.yaml"], {"b.yaml": "backends: [{name: a, url: ftp://x, gpu: A100}]"},
         ["backends[0]", "url"]),
        (["--backends", "{dir}/b.yaml", "--routing", "{dir}/r.yaml"],
         {"b.yaml": "backends: []", "r.yaml": "routing: {picker: fastest}"}, ["r.yaml", "picker", "fastest"]),
        (["--backends", "{dir}/b.yaml", "--routing", "{dir}/r.yaml"],
         {"b.yaml": "backends: []", "r.yaml": "scorers: [{type: cost, maxSlowdown: -1}]"}, ["r.yaml", "scorers[0]"]),
        (["--backends", "{dir}/b.yaml", "--routing", "{dir}/r.yaml", "--cost-weight", "1"],
         {"b.yaml": "backends: []", "r.yaml": "picker: best"}, ["--cost-weight", "--routing"]),
        (["--backends", "{dir}/b.yaml", "--cost-weight", "-1"], {"b.yaml": "backends: []"}, ["--cost-weight"]),
        (["--backends", "{dir}/b.yaml", "--api-keys", "{dir}/k.yaml"],
         {"b.yaml": "backends: []", "k.yaml": "keys: [{name: a, sha256: not-a-hash}]"}, ["k.yaml", "keys[0]", "sha256"]),
        (["--backends", "{dir}/b.yaml", "--rate-limit", "-5"], {"b.yaml": "backends: []"}, ["--rate-limit"]),
        (["--backends", "{dir}/b.yaml", "--max-pixels", "262144"], {"b.yaml": "backends: []"},
         ["default_width x default_height", "max_pixels 262144"]),
        (["--backends", "{dir}/b.yaml", "--default-refiner-switch-at", "2"], {"b.yaml": "backends: []"},
         ["--default-refiner-switch-at"]),
        (["--backends", "{dir}/b.yaml", "--peer-port", "8081", "--peers", "10.0.0.7:8081,gateway-b"],
         {"b.yaml": "backends: []"}, ["--peers", "host:port", "gateway-b"]),
        (["--backends", "{dir}/b.yaml", "--peer-port", "8081", "--peers", "[::1]:99999"],
         {"b.yaml": "backends: []"}, ["--peers", "[::1]:99999"]),
        (["--backends", "{dir}/b.yaml", "--peers", "10.0.0.7:8081"], {"b.yaml": "backends: []"},
         ["--peers", "--peer-port"]),
        (["--backends", "{dir}/b.yaml", "--peer-port", "0"], {"b.yaml": "backends: []"}, ["--peer-port"]),
    ],
    ids=["no-discovery", "missing-backends", "bad-backend-url", "unknown-picker", "bad-scorer-parameter",
         "routing-and-cost-weight", "negative-cost-weight", "bad-api-key-entry", "negative-rate-limit",
         "default-size-over-limit", "refiner-switch-over-1", "peer-without-port", "peer-port-out-of-range",
         "peers-without-peer-port", "peer-port-0"],
)
def test_gateway_bad_arguments(env: dict[str, str], tmp_path: Path, args: list[str], files: dict[str, str],
                               mentions: list[str]) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = [a.format(dir=tmp_path) for a in args]
    assert_user_error(sdxlpool("gateway", *args, env=env), *mentions)


@pytest.mark.parametrize(
    ("variables", "args", "mentions"),
    [
        ({"SDXLPOOL_LOG_LEVEL": "chatty"}, ["render", "pool.yaml"], ["$SDXLPOOL_LOG_LEVEL", "chatty"]),
        ({"SDXLPOOL_OPERATOR_RESYNC_SECONDS": "0"}, ["operator", "--standalone"],
         ["$SDXLPOOL_OPERATOR_RESYNC_SECONDS", "greater than 0"]),
        ({"SDXLPOOL_OPERATOR_WORKERS": "many"}, ["operator"], ["$SDXLPOOL_OPERATOR_WORKERS"]),
        ({"SDXLPOOL_GATEWAY_DEFAULT_STEPS": "200"}, ["gateway", "--backends", "b.yaml"],
         ["default_steps 200", "max_steps 150"]),
        ({"SDXLPOOL_GATEWAY_PEER_PORT": "8081", "SDXLPOOL_GATEWAY_PEERS": "10.0.0.7:8081,gateway-b"},
         ["gateway", "--backends", "b.yaml"], ["host:port", "gateway-b"]),
    ],
    ids=["log-level", "operator-resync", "operator-workers", "gateway-default-over-limit", "gateway-bad-peer"],
)
def test_bad_environment_variables(env: dict[str, str], tmp_path: Path, variables: dict[str, str],
                                   args: list[str], mentions: list[str]) -> None:
    (tmp_path / "b.yaml").write_text("backends: []")
    result = subprocess.run([str(SCRIPT), *args], env={**env, **variables}, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert_user_error(result, *mentions)


def test_gateway_busy_peer_port(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("backends: []")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        result = sdxlpool("gateway", "--backends", tmp_path / "b.yaml", "--port", free_port(), "--peer-port", port,
                          env=env)
    assert_user_error(result, f"127.0.0.1:{port} (UDP)")


def test_text_file_named_safetensors(env: dict[str, str], tmp_path: Path) -> None:
    fake = tmp_path / "x.safetensors"
    fake.write_text("these are not the weights you are looking for\n" * 20)
    assert_user_error(sdxlpool("worker", "--model", fake, env=env), str(fake), "safetensors")


def test_busy_port(env: dict[str, str], cli_model: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = sdxlpool("worker", "--model", cli_model / "base", "--port", port, env=env)
    assert_user_error(result, f"127.0.0.1:{port}")


# --- tiny-model ----------------------------------------------------------------------------------


def test_tiny_model_single_file_writes_both_layouts(cli_model: Path) -> None:
    for kind in ("base", "refiner"):
        assert (cli_model / kind / "model_index.json").is_file()
        assert (cli_model / kind / "unet").is_dir()
        single = cli_model / f"{kind}.safetensors"
        assert single.is_file() and single.stat().st_size > 1_000_000
    assert not [p.name for p in cli_model.iterdir() if p.name.startswith(".")]  # no staging left behind


# --- a single-file worker, end to end ----------------------------------------------------------------

REQUEST = {"prompt": "a lighthouse at dusk", "negative_prompt": "fog", "seed": 4242, "steps": 4,
           "sampler_name": "Euler a", "cfg_scale": 6.0, "refiner_switch_at": 0.5}


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    stderr: Path

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")


@pytest.fixture(scope="module")
def served(env: dict[str, str], cli_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`sdxlpool worker` on the single-file checkpoints, in its own process, ready."""
    port = free_port()
    logs = tmp_path_factory.mktemp("worker-logs")
    args = ["worker", "--model", cli_model / "base.safetensors", "--refiner", cli_model / "refiner.safetensors",
            "--port", str(port), "--default-width", "128", "--default-height", "128",
            "--gpu-model", "NVIDIA A100-SXM4-80GB", "--provider", "X", "--location", "Y"]
    with open(logs / "stdout", "wb") as out, open(logs / "stderr", "wb") as err:
        process = subprocess.Popen([str(SCRIPT), *map(str, args)], env=env, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL)
    server = Served(process, f"http://127.0.0.1:{port}", logs / "stderr")
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"worker exited with {process.returncode}:\n{server.log()}"
            try:
                if httpx.get(server.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"worker not ready after 120 s:\n{server.log()}"
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


def _txt2img(url: str, **extra: object) -> tuple[list[str], dict]:
    response = httpx.post(url + "/sdapi/v1/txt2img", json={**REQUEST, **extra}, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()
    return data["images"], json.loads(data["info"])


@pytest.fixture(scope="module")
def single_file_result(served: Served) -> tuple[list[str], dict]:
    models = httpx.get(served.url + "/sdapi/v1/sd-models", timeout=10).json()
    refiners = [m["model_name"] for m in models if m["sdxlpool_kind"] == "refiner"]
    assert refiners == ["refiner"]  # a single file is named after its stem: DIR/refiner.safetensors
    return _txt2img(served.url, refiner_checkpoint=refiners[0])


def test_single_file_worker_txt2img(single_file_result: tuple[list[str], dict]) -> None:
    images, info = single_file_result
    assert len(images) == 1
    image = decode(images[0])
    assert image.format == "PNG"
    assert image.size == (128, 128)  # from --default-width/--default-height: the request gives none
    assert info["seed"] == REQUEST["seed"]
    assert info["sd_model_name"] == "base"
    assert "Refiner: refiner" in info["infotexts"][0]
    placement = info["sdxlpool"]
    assert placement["gpu_model"] == "a100-80gb"
    assert (placement["provider"], placement["location"]) == ("X", "Y")


def test_single_file_and_folder_workers_draw_the_same_pixels(
    single_file_result: tuple[list[str], dict], tiny_model: TinyModel
) -> None:
    """`sdxlpool tiny-model` and the `tiny_model` fixture write the same weights (seed 0), and the
    single-file round trip keeps every weight bit for bit, so the pixels must be identical."""
    with start_worker(tiny_model, models=[tiny_model.base], refiner=tiny_model.refiner, warmup=False) as folder:
        folder.wait_ready()
        expected, info = _txt2img(folder.url, refiner_checkpoint="tiny/refiner")
    assert "Refiner: tiny/refiner" in info["infotexts"][0]
    got = pixels(single_file_result[0][0])
    want = pixels(expected[0])
    assert got.shape == want.shape == (128, 128, 3)
    np.testing.assert_array_equal(got, want)


def test_sigterm_stops_the_worker_cleanly(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    try:
        code = served.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"worker still running 15 s after SIGTERM:\n{served.log()}")
    log = served.log()
    # uvicorn >= 0.29 re-raises the signal it caught once shutdown is done; unless the CLI stops that,
    # the process dies of SIGTERM (-15, shell status 143) instead of returning 0 from main().
    assert code == 0, f"exit code {code} after SIGTERM (-15: killed by the re-raised signal):\n{log}"
    assert "Traceback" not in log, log


def test_operator_without_credentials_exits_2(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"KUBECONFIG", "KUBERNETES_SERVICE_HOST"}}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config either
    done = subprocess.run([sys.executable, "-m", "sdxlpool", "operator"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("sdxlpool operator: error: no Kubernetes credentials")
    assert "Traceback" not in done.stderr
    missing = subprocess.run([sys.executable, "-m", "sdxlpool", "operator", "--kubeconfig", str(tmp_path / "nope")],
                             capture_output=True, text=True, env=env, timeout=60)
    assert missing.returncode == 2 and "--kubeconfig" in missing.stderr
