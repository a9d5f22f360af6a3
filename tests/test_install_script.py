"""scripts/install.sh picks the torch build that suits the machine (its decisions, with --dry-run)."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install.sh"
TAG = f"cp{sys.version_info.major}{sys.version_info.minor}"


def install(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHON": sys.executable,
            "SDXLPOOL_WHEELS_DIR": str(tmp_path / "wheels"), "SDXLPOOL_NVIDIA_SMI": str(tmp_path / "no-nvidia-smi"),
            "SDXLPOOL_TORCH_CPU_INDEX": "http://127.0.0.1:9/whl/cpu"}  # port 9: nothing answers
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--venv", str(tmp_path / "venv"), *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def wheel(folder: Path, version: str) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / f"torch-{version}+cpu-{TAG}-{TAG}-manylinux_2_28_{os.uname().machine}.whl"
    path.touch()
    return path


def test_a_named_wheel_wins(tmp_path: Path) -> None:
    named = wheel(tmp_path / "mine", "2.6.0")
    wheel(tmp_path / "wheels", "2.13.0")
    done = install(tmp_path, "--step", "torch", SDXLPOOL_TORCH_WHEEL=str(named))
    assert done.returncode == 0, done.stderr
    assert f"would run: pip install {named}\n" in done.stdout


def test_the_newest_local_cpu_wheel_for_this_python(tmp_path: Path) -> None:
    wheel(tmp_path / "wheels", "2.9.1")
    newest = wheel(tmp_path / "wheels", "2.13.0")
    (tmp_path / "wheels" / f"torch-2.14.0+cpu-cp39-cp39-manylinux_2_28_{os.uname().machine}.whl").touch()
    done = install(tmp_path, "--step", "torch")
    assert f"would run: pip install {newest}\n" in done.stdout, done.stdout + done.stderr


def test_an_nvidia_gpu_gets_pypi_torch(tmp_path: Path) -> None:
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    done = install(tmp_path, "--step", "torch", SDXLPOOL_NVIDIA_SMI=str(smi), SDXLPOOL_TORCH_SPEC="torch==2.13.0")
    assert "would run: pip install torch==2.13.0\n" in done.stdout, done.stdout + done.stderr
    assert "CUDA" in done.stdout


def test_no_gpu_gets_the_cpu_index_when_it_answers(tmp_path: Path) -> None:
    (tmp_path / "index" / "whl" / "cpu" / "torch").mkdir(parents=True)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "index"))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        index = f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
        done = install(tmp_path, "--step", "torch", SDXLPOOL_TORCH_CPU_INDEX=index)
        server.shutdown()
    assert f"would run: pip install --index-url {index} torch\n" in done.stdout, done.stdout


def test_no_gpu_and_no_cpu_index_falls_back_to_pypi(tmp_path: Path) -> None:
    done = install(tmp_path, "--step", "torch")
    assert "cannot be reached" in done.stdout and "would run: pip install torch\n" in done.stdout, done.stdout


def test_test_extras_and_bad_options(tmp_path: Path) -> None:
    assert "would run: pip install -e .[test]\n" in install(tmp_path, "--step", "package", "--test").stdout
    bad = install(tmp_path, "--step", "everything")
    assert bad.returncode == 2 and bad.stderr == "install.sh: error: --step: one of venv, torch, package, got 'everything'\n"
    missing = install(tmp_path, "--step", "torch", SDXLPOOL_TORCH_WHEEL=str(tmp_path / "nope.whl"))
    assert missing.returncode == 2 and "nope.whl: no such file" in missing.stderr
