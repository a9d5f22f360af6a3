"""A local pool (sim-workers + gateway as processes), a client that sorts every answer into one
outcome, and samples of the gateway process: what the reliability scripts and their tests share.

Everything listens on 127.0.0.1; every child runs in its own process group (`processes.spawn`) and
`LocalPool.close` stops them all (a SIGSTOPped one gets SIGCONT first).

Outcomes of one request, as the client sees it:

    ok             200 with a JSON object
    rejected       429 with a Retry-After header and a JSON error code (admission)
    clear_error    any other 4xx/5xx whose body is JSON {"error": code, ...}
    unclear        any other answer (a 429 without Retry-After, a body that is not that JSON)
    timeout        no answer within the client's timeout (set above the gateway's own bound): hung
    transport      connection refused/reset by the gateway: lost
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import spawn, stop, wait_ready, wait_scraped

__all__ = ["WorkerSpec", "LocalPool", "Outcome", "Tally", "send", "GatewaySample", "sample_gateway", "machine",
           "write_report", "code_version", "KEEPALIVE_EXPIRY", "JOB_LOG_ENV", "seeds_sent"]

# The client drops an idle kept-alive connection before uvicorn does (its timeout_keep_alive is 5 s):
# at equal timeouts a request sent on a connection the server is closing gets a ReadError.
KEEPALIVE_EXPIRY = 2.0
OUTCOMES = ("ok", "rejected", "clear_error", "unclear", "timeout", "transport")
_TASKS = re.compile(rf"^{mn.GATEWAY_ASYNCIO_TASKS}\s+(\S+)$", re.M)
_INFLIGHT = re.compile(rf"^{mn.GATEWAY_INFLIGHT}\s+(\S+)$", re.M)

# A worker (or sim-worker) run with this environment logs one line per job it is sent, with the seed
# it will render (its own draw only when it was sent -1) and the prompt (sdxlpool/worker/service.py):
# a record, on the worker's side, of what each attempt of the gateway asked for.
JOB_LOG_ENV = {"SDXLPOOL_LOG_LEVEL": "INFO", "SDXLPOOL_LOG_PROMPTS": "true"}
_JOB_LINE = re.compile(r"job: seed (\d+), \d+ steps, \d+x\d+, prompt '([^'\\]*)'")


def seeds_sent(*logs: Path) -> dict[str, list[int]]:
    """The seeds the jobs in these worker logs were sent, by prompt, in each log's order (a log
    that does not exist yet holds no job). Prompts must be plain: no quotes or backslashes."""
    seeds: dict[str, list[int]] = {}
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        for seed, prompt in _JOB_LINE.findall(text):
            seeds.setdefault(prompt, []).append(int(seed))
    return seeds


@dataclass
class WorkerSpec:
    name: str
    gpu: str
    step_seconds: float
    args: tuple[str, ...] = ()  # more sim-worker flags, e.g. ("--hang-rate", "0.2")
    env: dict[str, str] = field(default_factory=dict)  # more environment, e.g. JOB_LOG_ENV
    port: int = 0
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class LocalPool:
    """Sim-workers and one gateway in front of them, as processes. Use as a context manager."""

    def __init__(self, workdir: Path, workers: list[WorkerSpec], *, gateway_args: tuple[str, ...] = (),
                 gateway_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.workers = workers
        self.gateway_args = gateway_args
        self.gateway_env = gateway_env or {}
        self.gateway: subprocess.Popen | None = None
        self.url = ""

    def __enter__(self) -> LocalPool:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self) -> None:
        for w in self.workers:
            w.port = w.port or free_port()
            self.start_worker(w)
        for w in self.workers:
            wait_ready(w.url, w.process, timeout=90)  # type: ignore[arg-type]
        backends = self.workdir / "backends.yaml"
        backends.write_text(yaml.safe_dump({"backends": [
            {"name": w.name, "url": w.url, "gpu": w.gpu, "type": "sdxlpool"} for w in self.workers]}))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.gateway = spawn([sys.executable, "-m", "sdxlpool", "gateway", "--backends", str(backends),
                              "--port", str(port), *self.gateway_args], self.workdir / "gateway.log",
                             env=self.gateway_env)
        wait_ready(self.url, self.gateway, timeout=90)
        wait_scraped(self.url, len(self.workers), timeout=60)

    def start_worker(self, w: WorkerSpec) -> None:
        """(Re)start `w` on its port; returns at once (the gateway notices when it is ready)."""
        w.process = spawn([sys.executable, "-m", "sdxlpool", "sim-worker", "--gpu-model", w.gpu,
                           "--step-seconds", str(w.step_seconds), "--port", str(w.port), "--worker-name", w.name,
                           *w.args], self.worker_log(w), env=w.env)

    def worker_log(self, w: WorkerSpec) -> Path:
        """`w`'s stdout and stderr, appended to across restarts."""
        return self.workdir / f"{w.name}.log"

    def signal_worker(self, w: WorkerSpec, sig: signal.Signals) -> None:
        if w.process is not None and w.process.poll() is None:
            os.killpg(w.process.pid, sig)
            if sig == signal.SIGKILL:
                w.process.wait(timeout=10)

    def close(self) -> None:
        for process in [self.gateway, *(w.process for w in self.workers)]:
            if process is not None:
                stop(process)

    def gateway_process(self) -> psutil.Process:
        assert self.gateway is not None
        return psutil.Process(self.gateway.pid)


# -- the client ---------------------------------------------------------------------------------

@dataclass
class Outcome:
    kind: str  # one of OUTCOMES
    status: int | None
    seconds: float
    code: str = ""  # the JSON error code, or the exception's name
    attempts: int = 0  # X-SDXL-Attempts
    queue_seconds: float = 0.0  # X-SDXL-Queue-Seconds
    seed_sent: int | None = None
    seed_returned: int | None = None


@dataclass
class Tally:
    """Every outcome of a run, and what the summaries need from them."""

    outcomes: list[Outcome] = field(default_factory=list)
    sent: int = 0

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)

    def kinds(self) -> dict[str, int]:
        return {kind: self.count(kind) for kind in OUTCOMES}

    def codes(self) -> dict[str, int]:
        """Error answers and failures by status and code, e.g. {'502 all_attempts_failed': 3}."""
        return dict(Counter(f"{o.status or '-'} {o.code}" for o in self.outcomes if o.kind != "ok"))

    @property
    def lost(self) -> int:
        """Sent but neither answered 200 nor with a clear error: no answer, or an unclear one."""
        return self.sent - self.count("ok") - self.count("rejected") - self.count("clear_error")

    def latencies(self, kind: str = "ok") -> list[float]:
        return sorted(o.seconds for o in self.outcomes if o.kind == kind)


async def send(client: httpx.AsyncClient, url: str, body: dict[str, Any], timeout: float) -> Outcome:
    """POST one txt2img to the gateway and sort the answer (see the module docstring)."""
    started = time.monotonic()
    seed = body.get("seed") if isinstance(body.get("seed"), int) and body["seed"] >= 0 else None
    try:
        response = await client.post(url + "/sdapi/v1/txt2img", json=body, timeout=timeout)
    except httpx.TimeoutException as exc:
        return Outcome("timeout", None, time.monotonic() - started, type(exc).__name__, seed_sent=seed)
    except httpx.HTTPError as exc:
        return Outcome("transport", None, time.monotonic() - started, type(exc).__name__, seed_sent=seed)
    seconds = time.monotonic() - started
    status = response.status_code
    attempts = int(response.headers.get("X-SDXL-Attempts") or 0)
    queued = float(response.headers.get("X-SDXL-Queue-Seconds") or 0.0)
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if status == 200 and isinstance(payload, dict):
        returned = None
        with contextlib.suppress(KeyError, TypeError, ValueError):
            returned = json.loads(payload["info"])["seed"]
        return Outcome("ok", status, seconds, attempts=attempts, queue_seconds=queued, seed_sent=seed,
                       seed_returned=returned)
    code = payload.get("error") if isinstance(payload, dict) else None
    if status >= 400 and isinstance(code, str) and code:
        kind = "clear_error"
        if status == 429:
            kind = "rejected" if response.headers.get("Retry-After", "").isdigit() else "unclear"
        return Outcome(kind, status, seconds, code, attempts, queued, seed)
    return Outcome("unclear", status, seconds, "not a JSON error", attempts, queued, seed)


# -- the gateway process --------------------------------------------------------------------------

@dataclass
class GatewaySample:
    requests: int  # answered so far when sampled
    rss_mib: float
    fds: int
    threads: int
    tasks: int | None  # sdxl_gateway_asyncio_tasks
    inflight: int | None  # sdxl_gateway_inflight


async def sample_gateway(process: psutil.Process, client: httpx.AsyncClient, url: str, requests: int) -> GatewaySample:
    text = ""
    with contextlib.suppress(httpx.HTTPError):
        text = (await client.get(url + "/metrics", timeout=10)).text
    tasks, inflight = _TASKS.search(text), _INFLIGHT.search(text)
    with process.oneshot():
        return GatewaySample(requests, process.memory_info().rss / 2**20, process.num_fds(), process.num_threads(),
                             int(float(tasks.group(1))) if tasks else None,
                             int(float(inflight.group(1))) if inflight else None)


def machine() -> str:
    import platform

    return f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def bench_arguments(parser: argparse.ArgumentParser, smoke: dict[str, Any]) -> argparse.Namespace:
    """Add `--smoke` (a quick run that checks the script works: `smoke` replaces those arguments) and
    `--out` (the results JSON, `write_report`) to a benchmark's parser, and parse the command line."""
    parser.add_argument("--smoke", action="store_true", help=f"a quick run that checks the script works: {smoke}")
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(smoke)
    return args


def write_report(out: Path | None, **results: Any) -> None:
    """A script's `--out` JSON: when, where and how it ran, from which commit, then its results.

    `commit` is the full HEAD of the git repository the script runs from and `clean` says whether its
    tracked files match HEAD (untracked files, such as the results being written, do not count); both
    are null outside a git checkout. They come last, so a script cannot overwrite them."""
    if out is None:
        return
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
                              "command": " ".join(["python", *sys.argv]), **results}
    report.update(code_version(_script_dir()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")


def code_version(directory: Path) -> dict[str, Any]:
    """{"commit": full HEAD sha, "clean": no change to tracked files} of the git checkout holding
    `directory`; None for both when it is not in one (or git is missing). Read-only git calls:
    `--no-optional-locks` keeps `git status` from refreshing the index while a benchmark runs."""
    git = ["git", "--no-optional-locks", "-C", str(directory)]
    try:
        head = subprocess.run([*git, "rev-parse", "--verify", "HEAD"], capture_output=True, text=True, timeout=30)
        status = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None, "clean": None}
    if head.returncode != 0 or status.returncode != 0:
        return {"commit": None, "clean": None}
    return {"commit": head.stdout.strip(), "clean": status.stdout.strip() == ""}


def _script_dir() -> Path:
    """Where the running script lives (`python benchmarks/x.py` from anywhere), else the working directory."""
    script = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    return script.resolve().parent if script is not None and script.is_file() else Path.cwd()
