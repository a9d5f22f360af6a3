"""Ctrl-C in the client's corners, each made to happen on purpose in a real process.

- The unwinding after Ctrl-C gets stuck: `ctrl_c_exits` still ends the process with 130 within its grace.
- The process started with SIGINT ignored, as a background job of a non-interactive shell starts
  (a CI script run with `&`; POSIX): Ctrl-C still cancels the job and exits 130. This is what made
  test_ctrl_c_cancels_the_job_and_exits_130 fail in a backgrounded `.ci/run`: Python keeps an
  inherited SIG_IGN, so the client went on printing progress after SIGINT.
- SIGINT lands on the WebSocket's reader thread (the kernel may hand a process-directed signal to
  any thread; Python runs handlers only in the main thread) while the request waits in the
  gateway's queue, where no events arrive: the main thread still sees it within a second.
(`test_generate_cli.py` sends SIGINT to `sdxlpool generate` while connecting, queued and streaming.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sdxlpool.api import metric_names as mn
from tests.client.test_generate_cli import (
    SCRIPT,
    STEP,
    assert_interrupted,
    env,
    interrupt,
    read_until,
    start_generate,
)
from tests.gateway.conftest import start_gateway, write_backends
from tests.polling import metrics, wait_for

READY = "ready"


def python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def wait_line(process: subprocess.Popen[str], expected: str) -> None:
    line = process.stdout.readline().strip()
    assert line == expected, (line, process.stderr.read() if process.poll() is not None else "")


def test_ctrl_c_exits_even_when_the_unwinding_is_stuck() -> None:
    process = python("""
        import sys, threading
        from sdxlpool.client._cli import ctrl_c_exits

        with ctrl_c_exits(130, grace=1.0):
            try:
                print("ready", flush=True)
                threading.Event().wait(60)
            except KeyboardInterrupt:
                threading.Event().wait(60)  # a close that never completes
        sys.exit(3)
    """)
    try:
        wait_line(process, READY)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        process.wait(timeout=30)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, process.stderr.read()
    assert 0.9 < took < 10, took  # the grace (1 s), plus margin for a loaded machine


def test_ctrl_c_restores_the_previous_handler() -> None:
    from sdxlpool.client._cli import ctrl_c_exits

    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_exits(130, grace=1.0):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


# The Python client, waiting in the gateway's queue; SIGINT goes to the reader thread once the
# main thread is blocked waiting for the next event. Prints how long the KeyboardInterrupt took.
SIGNAL_THE_READER_THREAD = """
    import signal, sys, threading, time
    from sdxlpool.client import generate

    main, queued = threading.main_thread(), threading.Event()

    def blocked_in_recv():
        frame = sys._current_frames().get(main.ident)
        return frame is not None and frame.f_code.co_name == "get_next_frame"

    def deliver():
        queued.wait()
        deadline = time.monotonic() + 30
        while not (blocked_in_recv() and (time.sleep(0.2) or blocked_in_recv())):
            assert time.monotonic() < deadline, "the main thread never waited for an event"
            time.sleep(0.01)
        reader = next(t for t in threading.enumerate() if "recv_events" in t.name)
        deliver.sent = time.monotonic()
        signal.pthread_kill(reader.ident, signal.SIGINT)

    def on_event(event):
        if event["event"] == "queued":
            queued.set()

    threading.Thread(target=deliver, daemon=True).start()
    try:
        generate("x", gateway=sys.argv[1], steps=100, width=1024, height=1024, on_event=on_event)
    except KeyboardInterrupt:
        print(f"{time.monotonic() - deliver.sent:.3f}", flush=True)
        sys.exit(130)
    sys.exit(1)
"""


@pytest.mark.parametrize("sims", [[("slow", 0.2)]], indirect=True)
def test_ctrl_c_on_the_reader_thread_while_queued(sims, tmp_path: Path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, backlog_seconds=1) as gateway:
        gateway.wait_ready()
        running = start_generate("x", "--gateway", gateway.url, "--steps", "100", "--size", "1024x1024", "-o",
                                 str(tmp_path / "first.png"), cwd=tmp_path)  # 20 s of work: the next one waits
        client = None
        try:
            read_until(running, STEP)
            client = python(SIGNAL_THE_READER_THREAD, gateway.url)
            wait_for(lambda: metrics(gateway.url)[mn.GATEWAY_QUEUE_DEPTH] == 1, timeout=30)
            stdout, stderr = client.communicate(timeout=60)
        finally:
            for process in (running, client):
                if process is not None and process.poll() is None:
                    process.kill()
                    process.wait()
        assert client.returncode == 130, (client.returncode, stderr[-2000:])
        # Seen within a wait slice (0.25 s), plus margin; unbounded, it waits for the job ahead (~18 s).
        assert float(stdout) < 5, stdout


@pytest.mark.parametrize("sims", [[("slow", 0.2)]], indirect=True)
def test_ctrl_c_when_started_with_sigint_ignored(sims, tmp_path: Path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        process = subprocess.Popen(
            [str(SCRIPT), "generate", "x", "--gateway", gateway.url, "--steps", "100", "--size", "1024x1024"],
            env=env(), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            stdin=subprocess.DEVNULL, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            read_until(process, STEP)
            stdout, stderr, took = interrupt(process)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert_interrupted(process, stdout, stderr, took, cwd=tmp_path)
        wait_for(lambda: metrics(sims[0].url)[mn.WORKER_INFLIGHT] == 0, timeout=10)
