"""`sdxlpool generate`, run for real as a subprocess against a real gateway in front of sim-workers
(and, once, in front of real tiny-model workers).

Covers: the PNG written (named after the seed by default) and valid; the GPU, provider, location
and worker printed are those of the worker that served it; `--gpu` picks the model; progress shows
"step k/n" and the GPU; --json; the gateway's refusals (503 naming the GPU model, 422 naming the
field, 401 without a key, 429 with its retry-after) exit 1 on one line; no gateway listening exits 1
on one line; bad flags exit 2 on one line; Ctrl-C exits 130 while connecting, queued at the gateway
or streaming (and the worker stops the job); --timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from sdxlpool.api import metric_names as mn
from sdxlpool.gateway.api_keys import hash_key, new_key
from sdxlpool.testing.ports import free_port
from tests.gateway.conftest import start_gateway, write_backends
from tests.polling import metrics, wait_for

SCRIPT = Path(sys.executable).with_name("sdxlpool")
TWO_MODELS = [("a100", 0.05), ("rtx", 0.05, "--gpu-model", "RTX-3090")]
STEP = re.compile(r"step (\d+)/(\d+)")


def env(**extra: str) -> dict[str, str]:
    """The caller's environment without sdxlpool client settings that would change the outcome."""
    base = {k: v for k, v in os.environ.items() if k not in ("SDXLPOOL_GATEWAY_URL", "SDXLPOOL_API_KEY")}
    return {**base, "PYTHONUNBUFFERED": "1", **extra}


def generate(*args: str | Path, cwd: Path, timeout: float = 60, **env_extra: str) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.is_file(), f"{SCRIPT} is missing: install the package (pip install -e .)"
    return subprocess.run([str(SCRIPT), "generate", *map(str, args)], env=env(**env_extra), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def summary(stdout: str) -> dict[str, str]:
    """`name: value` lines of the summary."""
    return {name.strip(): value.strip() for name, _, value in
            (line.partition(":") for line in stdout.splitlines()[1:])}


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *mentions: str,
                          progress: bool = True) -> str:
    """The error is the last line of stderr, and the only one besides progress lines (`progress`:
    the gateway took the request, so a `queued` line may come first)."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in lines if line.startswith("sdxlpool")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"expected one error line last:\n{result.stderr}"
    assert progress or len(lines) == 1, f"expected only the error line:\n{result.stderr}"
    assert lines[-1].startswith("sdxlpool generate: error: "), lines[-1]
    for text in mentions:
        assert text.lower() in lines[-1].lower(), f"{text!r} not in {lines[-1]!r}"
    assert result.stdout == ""
    return lines[-1]


def assert_png(path: Path, size: tuple[int, int]) -> None:
    with Image.open(path) as image:
        image.load()  # decodes every pixel, not just the header
        assert (image.format, image.size) == ("PNG", size)


# --- against sim-workers -------------------------------------------------------------------------


@pytest.mark.parametrize("sims", [TWO_MODELS], indirect=True)
def test_generate_writes_the_png_and_says_where_it_ran(sims, tmp_path: Path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()

        # --gpu picks the model; the file is named after the seed; the gateway comes from the environment.
        done = generate("a lighthouse", "--gpu", "RTX-3090", "--size", "1024x1024", "--steps", "20", "--seed", "42",
                        cwd=tmp_path, SDXLPOOL_GATEWAY_URL=gateway.url)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert_png(tmp_path / "sdxl-42.png", (1024, 1024))
        assert done.stdout.splitlines()[0].startswith("wrote sdxl-42.png (1024x1024 PNG")
        printed = summary(done.stdout)
        assert (printed["GPU"], printed["provider"], printed["location"], printed["worker"]) == \
            ("RTX 3090", "provider-rtx", "rack-rtx", "rtx")
        assert (printed["seed"], printed["attempts"]) == ("42", "1")
        for timing in ("queue", "inference", "total"):
            assert re.fullmatch(r"\d+\.\d\d s", printed[timing]), printed
        assert float(printed["inference"].split()[0]) > 0
        # Progress on stderr, a line per change (not a terminal): queue, the GPU, then step k/20.
        progress = done.stderr.splitlines()
        assert progress[0] == "queued at the gateway"
        assert progress[1] == "running on RTX 3090 (provider-rtx, rack-rtx; worker rtx)"
        steps = [tuple(map(int, STEP.search(line).groups())) for line in progress[2:]]
        assert len(steps) >= 2 and {n for _, n in steps} == {20}
        assert [k for k, _ in steps] == sorted(k for k, _ in steps) and steps[-1] == (20, 20)
        assert all(line.endswith("on RTX 3090") or "s left" in line for line in progress[2:])

        # The other model, --json on stdout, -o naming the file, --quiet.
        out = tmp_path / "pictures" / "a100.png"
        out.parent.mkdir()
        as_json = generate("a lighthouse", "--gateway", gateway.url, "--gpu", "a100", "--size", "256x128",
                           "--seed", "7", "-o", out, "--json", "--quiet", cwd=tmp_path)
        assert as_json.returncode == 0, as_json.stderr
        assert as_json.stderr == ""
        result = json.loads(as_json.stdout)
        assert_png(out, (256, 128))
        assert result["output"] == str(out)
        assert (result["worker"], result["gpu_model"], result["gpu_name"], result["provider"], result["location"]) \
            == ("a100", "a100", "A100", "provider-a100", "rack-a100")
        assert result["seed"] == 7 and result["attempts"] == 1
        assert result["timings"]["inference_seconds"] > 0 and result["info"]["width"] == 256
        assert "image" not in result and "images" not in result

        # -o a folder: the file goes in it, named after the seed.
        folder = generate("x", "--gateway", gateway.url, "--seed", "3", "--size", "64x64", "-o", out.parent, "-q",
                          cwd=tmp_path)
        assert folder.returncode == 0, folder.stderr
        assert_png(out.parent / "sdxl-3.png", (64, 64))


@pytest.mark.parametrize("sims", [[("a100", 0.01)]], indirect=True)
def test_gateway_refusals_exit_1_on_one_line(sims, tmp_path: Path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        url = ("--gateway", gateway.url)
        line = assert_one_line_error(generate("x", *url, "--gpu", "H100", cwd=tmp_path), 1, "503 no_backend", "h100")
        assert "Retry" not in line
        assert_one_line_error(generate("x", *url, "--steps", "100000", cwd=tmp_path), 1, "422", "steps")
        assert_one_line_error(generate("x", *url, "--sampler", "Nope", cwd=tmp_path), 1, "404", "Nope")
        assert_one_line_error(generate("x", *url, "--gpu", "Voodoo-5", cwd=tmp_path), 1, "422", "gpus", "Voodoo-5")
        assert not list(tmp_path.glob("*.png"))


def test_no_gateway_listening_exits_1_on_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    line = assert_one_line_error(generate("x", "--gateway", url, cwd=tmp_path), 1, progress=False)
    assert line.startswith(f"sdxlpool generate: error: cannot connect to the gateway at {url}: ")


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["x", "--steps", "abc"], ["--steps", "abc"]),
        (["x", "--steps", "0"], ["--steps"]),
        (["x", "--size", "12"], ["--size", "12"]),
        (["x", "--size", "1024x1024", "--width", "512"], ["--size", "--width"]),
        (["x", "--cfg", "nan"], ["--cfg"]),
        (["x", "--seed", "-2"], ["--seed"]),
        (["x", "--refiner-switch-at", "1.5"], ["--refiner-switch-at"]),
        (["x", "--gpu", "A100,,L40"], ["--gpu"]),
        (["x", "--timeout", "0"], ["--timeout"]),
        (["x", "--gateway", "ftp://host"], ["--gateway", "ftp://host"]),
        (["x", "-o", "no/such/folder/x.png"], ["--output", "no/such/folder"]),
        (["x", "-o", "x.jpg"], ["--output", "PNG"]),
        (["   "], ["PROMPT"]),
        ([], ["PROMPT"]),
        (["x", "--bogus"], ["--bogus"]),
    ],
    ids=["steps-not-int", "steps-0", "size-12", "size-and-width", "cfg-nan", "seed-below-minus-1",
         "refiner-switch-over-1", "gpu-empty-item", "timeout-0", "gateway-ftp", "output-missing-folder",
         "output-not-png", "empty-prompt", "no-prompt", "unknown-flag"],
)
def test_bad_arguments_exit_2_on_one_line(tmp_path: Path, args: list[str], mentions: list[str]) -> None:
    result = generate(*args, cwd=tmp_path, timeout=30)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    # (an unknown flag is reported by the top-level parser: "sdxlpool: error: ...")
    assert len(lines) == 1 and re.match(r"sdxlpool( generate)?: error: ", lines[0]), result.stderr
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


def write_png(path: Path, size: tuple[int, int], rgb: tuple[int, int, int] = (200, 20, 20)) -> Path:
    Image.new("RGB", size, rgb).save(path)
    return path


@pytest.mark.parametrize("sims", [[("a100", 0.0)]], indirect=True)
def test_init_image_mask_and_hires(sims, tmp_path: Path) -> None:
    """--init-image makes an img2img (at the init image's size), --mask an inpainting, --hires a
    hires-fix txt2img (at the upscaled size); --denoising-strength goes with either."""
    write_png(tmp_path / "init.png", (96, 64))
    write_png(tmp_path / "mask.png", (96, 64), (255, 255, 255))
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        url = ("--gateway", gateway.url)
        done = generate("x", *url, "--init-image", "init.png", "--denoising-strength", "0.4", "--steps", "10",
                        "--seed", "1", "-o", "i2i.png", "--json", "-q", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert_png(tmp_path / "i2i.png", (96, 64))
        assert json.loads(done.stdout)["info"]["denoising_strength"] == 0.4
        masked = generate("x", *url, "--init-image", "init.png", "--mask", "mask.png", "--seed", "1",
                          "-o", "inpaint.png", "-q", cwd=tmp_path)
        assert masked.returncode == 0, masked.stderr
        assert_png(tmp_path / "inpaint.png", (96, 64))
        hires = generate("x", *url, "--size", "64x64", "--hires", "2", "--denoising-strength", "0.5", "--seed", "1",
                         "-o", "hires.png", "-q", cwd=tmp_path)
        assert hires.returncode == 0, hires.stderr
        assert_png(tmp_path / "hires.png", (128, 128))


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["--init-image", "missing.png"], ["--init-image", "missing.png"]),
        (["--init-image", "notes.txt"], ["--init-image", "notes.txt", "not an image"]),
        (["--init-image", "empty.png"], ["--init-image", "empty.png", "empty"]),
        (["--init-image", "init.png", "--mask", "notes.txt"], ["--mask", "notes.txt"]),
        (["--mask", "init.png"], ["--mask", "--init-image"]),
        (["--init-image", "init.png", "--hires", "2"], ["--hires", "--init-image"]),
        (["--denoising-strength", "0.5"], ["--denoising-strength"]),
        (["--init-image", "init.png", "--denoising-strength", "1.5"], ["--denoising-strength"]),
        (["--hires", "0.5"], ["--hires"]),
        (["--hires", "x2"], ["--hires"]),
    ],
    ids=["init-missing", "init-not-an-image", "init-empty", "mask-not-an-image", "mask-without-init",
         "hires-with-init", "strength-alone", "strength-over-1", "hires-below-1", "hires-not-a-number"],
)
def test_bad_image_options_exit_2_on_one_line(tmp_path: Path, args: list[str], mentions: list[str]) -> None:
    write_png(tmp_path / "init.png", (64, 64))
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "empty.png").write_bytes(b"")
    result = generate("x", "--gateway", f"http://127.0.0.1:{free_port()}", *args, cwd=tmp_path, timeout=30)
    lines = result.stderr.splitlines()
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("sdxlpool generate: error: "), result.stderr
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"


def test_bad_gateway_url_in_the_environment_exits_2(tmp_path: Path) -> None:
    result = generate("x", cwd=tmp_path, SDXLPOOL_GATEWAY_URL="localhost:8080")
    assert result.returncode == 2 and "$SDXLPOOL_GATEWAY_URL" in result.stderr, result.stderr


@pytest.mark.parametrize("sims", [[("a100", 0.01)]], indirect=True)
def test_api_key_required(sims, tmp_path: Path) -> None:
    key = new_key()
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "studio", "sha256": hash_key(key)}]}))
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, api_keys_file=keys) as gateway:
        gateway.wait_ready()
        url = ("--gateway", gateway.url)
        assert_one_line_error(generate("x", *url, cwd=tmp_path), 1, "401 unauthorized", "API key is required")
        assert_one_line_error(generate("x", *url, "--api-key", key + "x", cwd=tmp_path), 1, "401", "not valid")
        flag = generate("x", *url, "--api-key", key, "--seed", "1", "-q", cwd=tmp_path)
        assert flag.returncode == 0, flag.stderr
        from_env = generate("x", *url, "--seed", "2", "-q", cwd=tmp_path, SDXLPOOL_API_KEY=key)
        assert from_env.returncode == 0, from_env.stderr
        assert (tmp_path / "sdxl-1.png").is_file() and (tmp_path / "sdxl-2.png").is_file()


@pytest.mark.parametrize("sims", [[("a100", 0.01)]], indirect=True)
def test_rate_limited_says_when_to_retry(sims, tmp_path: Path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, rate_limit_per_minute=1, rate_limit_burst=1) as gateway:
        gateway.wait_ready()
        first = generate("x", "--gateway", gateway.url, "-q", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        line = assert_one_line_error(generate("x", "--gateway", gateway.url, cwd=tmp_path), 1, "429")
        assert re.search(r"\(retry after \d+ s\)$", line), line


# Ctrl-C: exit 130 within this bound from SIGINT, whatever phase it lands in. The client itself
# exits within INTERRUPT_GRACE (5 s) at the latest and usually within a second; the rest is margin
# for a loaded 2-core CI machine.
CTRL_C_BOUND = 12.0


def start_generate(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(SCRIPT), "generate", *args], env=env(), cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def read_until(process: subprocess.Popen[str], pattern: re.Pattern[str]) -> list[str]:
    """stderr lines up to the first that matches `pattern`."""
    seen: list[str] = []
    while not seen or not pattern.search(seen[-1]):
        line = process.stderr.readline()
        assert line, f"no line matching {pattern.pattern!r}; stderr so far: {seen}"
        seen.append(line)
    return seen


def interrupt(process: subprocess.Popen[str]) -> tuple[str, str, float]:
    """SIGINT; then (stdout, stderr, seconds to exit), killing it past CTRL_C_BOUND + 10 s."""
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        stdout, stderr = process.communicate(timeout=CTRL_C_BOUND + 10)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return stdout, stderr, time.monotonic() - sent


def assert_interrupted(process: subprocess.Popen[str], stdout: str, stderr: str, took: float, cwd: Path) -> None:
    assert process.returncode == 130, (process.returncode, stderr[-2000:])
    assert took < CTRL_C_BOUND, f"exited {took:.1f} s after SIGINT; stderr: {stderr[-2000:]}"
    assert "Traceback" not in stderr and stdout == ""
    assert not list(cwd.glob("*.png"))


def test_ctrl_c_while_connecting_exits_130(tmp_path: Path) -> None:
    """A gateway that accepts the TCP connection and never answers the WebSocket handshake."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        process = start_generate("x", "--gateway", f"http://127.0.0.1:{listener.getsockname()[1]}", cwd=tmp_path)
        try:
            listener.settimeout(30)
            connection, _ = listener.accept()  # the client is in its handshake now
            with connection:
                assert_interrupted(process, *interrupt(process), cwd=tmp_path)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.parametrize("sims", [[("slow", 0.2)]], indirect=True)
def test_ctrl_c_cancels_the_job_and_exits_130(sims, tmp_path: Path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    worker = sims[0].url
    # backlog_seconds=1: with one 20 s job on the worker, a second request waits in the gateway's queue.
    with start_gateway(path, backlog_seconds=1) as gateway:
        gateway.wait_ready()
        # 100 steps at 1024x1024: 20 s of work.
        job = ("x", "--gateway", gateway.url, "--steps", "100", "--size", "1024x1024")
        running = start_generate(*job, cwd=tmp_path)
        waiting = None
        try:
            read_until(running, STEP)
            assert metrics(worker)[mn.WORKER_INFLIGHT] == 1

            # While queued at the gateway: no events arrive in this phase.
            waiting = start_generate(*job, cwd=tmp_path)
            read_until(waiting, re.compile("queued at the gateway"))
            wait_for(lambda: metrics(gateway.url)[mn.GATEWAY_QUEUE_DEPTH] == 1, timeout=30)
            assert_interrupted(waiting, *interrupt(waiting), cwd=tmp_path)
            wait_for(lambda: metrics(gateway.url)[mn.GATEWAY_QUEUE_DEPTH] == 0, timeout=10)

            # While progress streams: the worker stops the job.
            assert running.poll() is None
            stdout, stderr, took = interrupt(running)
        finally:
            for process in (running, waiting):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
        assert_interrupted(running, stdout, stderr, took, cwd=tmp_path)
        started = time.monotonic()
        wait_for(lambda: metrics(worker)[mn.WORKER_INFLIGHT] == 0, timeout=10)
        assert time.monotonic() - started < 5  # stopped, not run to the end
        assert metrics(worker)[f'{mn.WORKER_REQUESTS}_total{{outcome=cancelled}}'] == 1

        # --timeout: gives up on one line, and the job is cancelled too.
        late = generate("x", "--gateway", gateway.url, "--steps", "100", "--size", "1024x1024", "--timeout", "1",
                        "-q", cwd=tmp_path)
        assert_one_line_error(late, 1, "no result after 1 s")
        wait_for(lambda: metrics(worker)[f'{mn.WORKER_REQUESTS}_total{{outcome=cancelled}}'] == 2, timeout=10)


# --- the Python API, in-process -------------------------------------------------------------------


@pytest.mark.parametrize("sims", [[("a100", 0.05)]], indirect=True)
def test_python_api(sims, tmp_path: Path) -> None:
    from sdxlpool.client import GatewayError, GatewayUnreachable, Result, generate

    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        events: list[dict] = []
        result = generate("a lighthouse", gateway=gateway.url, gpus=["A100"], steps=10, width=1024, height=1024,
                          seed=9, on_event=events.append)
        assert isinstance(result, Result) and result.image.startswith(b"\x89PNG")
        assert (result.seed, result.worker, result.gpu_name, result.attempts) == (9, "a100", "A100", 1)
        assert result.inference_seconds and result.inference_seconds > 0
        assert [e["event"] for e in events][:2] == ["queued", "assigned"] and events[-1]["event"] == "done"
        assert any(e["event"] == "progress" and e["steps"] == 10 for e in events)
        with pytest.raises(GatewayError) as refused:
            generate("x", gateway=gateway.url, gpus=["H100"])
        assert (refused.value.status, refused.value.code) == (503, "no_backend") and "H100" in refused.value.detail
    with pytest.raises(GatewayUnreachable, match="cannot connect to the gateway"):
        generate("x", gateway=f"http://127.0.0.1:{free_port()}")


def test_the_cli_starts_without_the_websocket_library() -> None:
    code = "import sys, sdxlpool.cli; sdxlpool.cli._build_parser(); print('websockets' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- against real tiny-model workers -------------------------------------------------------------


def test_generate_on_tiny_model_workers(workers, tmp_path: Path) -> None:
    chosen = [workers["a100-1"], workers["rtx-1"]]
    path = write_backends(tmp_path / "b.yaml", [w.backend() for w in chosen])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        done = generate("a lighthouse at dusk", "--gateway", gateway.url, "--gpu", "RTX 3090", "--size", "128x128",
                        "--steps", "3", "--sampler", "Euler", "--seed", "5", "--cfg", "6", "--negative", "fog",
                        "-o", tmp_path / "tiny.png", cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        assert_png(tmp_path / "tiny.png", (128, 128))
        printed = summary(done.stdout)
        assert (printed["GPU"], printed["provider"], printed["location"], printed["worker"], printed["seed"]) == \
            ("RTX 3090", "provider-rtx-1", "rack-rtx-1", "rtx-1", "5")
        assert "running on RTX 3090 (provider-rtx-1, rack-rtx-1; worker rtx-1)" in done.stderr
