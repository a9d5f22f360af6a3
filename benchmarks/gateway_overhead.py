"""Gateway overhead: added latency and max requests/s in front of one zero-delay sim-worker, vs nginx.

Three targets serve the same POST /sdapi/v1/txt2img (1024x1024, 20 steps, fixed seed), answered by
one `sdxlpool sim-worker --step-seconds 0 --image-bytes 1500000` (about 2 MB of JSON per response):

  direct   the sim-worker itself
  gateway  `sdxlpool gateway --backends FILE` with that one worker (one process, uvicorn)
  nginx    Debian's nginx as a plain reverse proxy: worker_processes 1 (the gateway is one process
           too), HTTP/1.1 with upstream keepalive, buffers that hold a whole 2 MB response in memory

1. Latency: one keep-alive client per target, N sequential requests after a warm-up, interleaved
   round by round (the order rotates each round) so machine noise hits all three alike. Added
   latency = target minus direct, percentile by percentile.
2. Max requests/s: closed loop with C connections for a fixed time per target, with `wrk` (a POST
   body from a Lua script) when it is installed, else an httpx async client (stated in the output).

3. Request kinds (issue 15): the same seeded txt2img, an img2img (a noisy 1024x1024 PNG upload,
   ~4 MB of base64, denoising 0.5) and a hires-fix txt2img (512x512 x2) sent direct and through the
   gateway, interleaved as in 1; per kind the gateway's p50 over the worker's (`kinds`), and that
   ratio over txt2img's (`kind_ratio_over_txt2img`), which the issue wants about 1 for every kind.

Goal (issue): gateway p50 added latency under 2 ms, and within 2x of nginx's added latency.

    python benchmarks/gateway_overhead.py [--requests 300] [--warmup 20] [--concurrency 8 32]
                                          [--duration 10] [--kind-requests 100] [--port 7940]
                                          [--out FILE] [--smoke]

Needs nginx on PATH (Debian: `apt-get install nginx`); exits 2 with a message when it is missing.
`--smoke` (CI: tests/benchmarks/test_smoke.py) runs every step at tiny sizes on free ports in seconds,
and without nginx measures direct and gateway only, saying so; its figures mean nothing.
Bounded: every loop has a request count or a deadline, every wait a timeout; 127.0.0.1 only; every
child runs in its own process group, stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from sdxlpool.testing.pool import machine, write_report
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import wait_ready
from sdxlpool.testing.stats import percentile

HOST = "127.0.0.1"
PATH = "/sdapi/v1/txt2img"
BODY = {"prompt": "a lighthouse on a cliff at dusk, volumetric light, detailed", "negative_prompt": "blurry",
        "steps": 20, "width": 1024, "height": 1024, "seed": 1234, "sampler_name": "Euler", "cfg_scale": 7}
TARGETS = ("direct", "gateway", "nginx")
KIND_PATHS = {"txt2img": "/sdapi/v1/txt2img", "img2img": "/sdapi/v1/img2img", "hires": "/sdapi/v1/txt2img"}
RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per target")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up requests per target")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32], help="closed-loop connections")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per target and concurrency")
    parser.add_argument("--image-bytes", type=int, default=1_500_000)
    parser.add_argument("--kind-requests", type=int, default=100,
                        help="sequential requests per target and kind (txt2img, img2img, hires)")
    parser.add_argument("--port", type=int, default=7940, help="worker port; gateway +1, nginx +2 (0: free ports)")
    parser.add_argument("--client", choices=["auto", "wrk", "httpx"], default="auto", help="throughput client")
    parser.add_argument("--out", type=Path, help="JSON file (default results/gateway-overhead-DATE.json)")
    parser.add_argument("--smoke", action="store_true",
                        help="CI check that the script runs: tiny sizes, free ports, httpx client, nginx optional")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.warmup, args.concurrency, args.duration, args.kind_requests = 5, 1, [2], 1.0, 3
        args.image_bytes, args.port, args.client = 20_000, 0, "httpx"
    if not (1 <= args.requests <= 100_000 and 0 <= args.warmup <= 10_000 and 0 < args.duration <= 600
            and all(1 <= c <= 1000 for c in args.concurrency) and 1 <= args.kind_requests <= 10_000):
        parser.error("out of range: requests 1..100000, warmup 0..10000, duration (0, 600], concurrency 1..1000, "
                     "kind-requests 1..10000")

    nginx = find_nginx()
    if nginx is None and args.smoke:
        print("gateway_overhead --smoke: nginx not found on PATH or in /usr/sbin: skipping the nginx peer "
              "(measuring direct and gateway only)", flush=True)
    elif nginx is None:
        print("gateway_overhead: nginx not found on PATH or in /usr/sbin; install it first "
              "(Debian: apt-get install -y nginx). The script does not install it.", file=sys.stderr)
        return 2
    wrk = shutil.which("wrk") if args.client in ("auto", "wrk") else None
    if args.client == "wrk" and wrk is None:
        print("gateway_overhead: wrk not found (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    targets = TARGETS if nginx else ("direct", "gateway")
    if args.port == 0:
        ports = {name: free_port() for name in targets}
    else:
        ports = {name: args.port + i for i, name in enumerate(targets)}
    urls = {name: f"http://{HOST}:{port}" for name, port in ports.items()}
    workdir = Path(tempfile.mkdtemp(prefix="sdxl-gw-overhead-"))
    # The worker runs one job at a time; a queue deeper than the largest C keeps the direct runs free of 503s.
    max_queue = max(16, 2 * max(args.concurrency))
    (workdir / "backends.yaml").write_text(
        f"backends:\n  - name: sim-1\n    url: {urls['direct']}\n    gpu: A100\n    provider: bench\n"
        "    location: local\n    type: sdxlpool\n")
    sdxlpool = [sys.executable, "-m", "sdxlpool"]
    commands = {
        "direct": [*sdxlpool, "sim-worker", "--gpu-model", "A100", "--step-seconds", "0", "--image-bytes",
                   str(args.image_bytes), "--max-queue", str(max_queue), "--host", HOST, "--port", str(ports["direct"])],
        "gateway": [*sdxlpool, "gateway", "--backends", str(workdir / "backends.yaml"), "--host", HOST,
                    "--port", str(ports["gateway"])],
    }
    if nginx:
        write_nginx_conf(workdir, ports["nginx"], ports["direct"], max(args.concurrency))
        commands["nginx"] = [nginx, "-p", str(workdir), "-e", str(workdir / "error.log"), "-c",
                             str(workdir / "nginx.conf"), "-g", "daemon off;"]
    load_before = os.getloadavg()[0]
    processes: dict[str, subprocess.Popen] = {}
    logs = []
    try:
        for name in targets:  # worker first: the gateway and nginx need it
            logs.append((workdir / f"{name}.log").open("wb"))
            processes[name] = subprocess.Popen(commands[name], stdout=logs[-1], stderr=subprocess.STDOUT,
                                               stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                wait_ready(urls[name], processes[name], timeout=60)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{name} did not start ({exc}); its log: {workdir / f'{name}.log'}") from None
        body = json.dumps(BODY).encode()
        check_responses(urls, body, args.image_bytes)
        latency = measure_latency(ports, body, args.requests, args.warmup, args.image_bytes)
        if wrk:
            client = f"wrk {wrk_version(wrk)} (-t1, POST body from a Lua script)"
            throughput = {c: {name: run_wrk(wrk, urls[name], body, c, args.duration, workdir) for name in targets}
                          for c in args.concurrency}
        else:
            client = "httpx AsyncClient in one Python process (wrk not installed: the client may be the bottleneck)"
            throughput = {c: {name: asyncio.run(run_httpx(urls[name], body, c, args.duration)) for name in targets}
                          for c in args.concurrency}
        kind_bodies = request_kinds(256 if args.smoke else 1024)
        kinds = measure_kinds({name: ports[name] for name in ("direct", "gateway")}, kind_bodies,
                              args.kind_requests, args.warmup, args.image_bytes)
        gateway_rss = rss_kib(processes["gateway"].pid)
    finally:
        for name in reversed(list(processes)):
            stop(processes[name])
        for log in logs:
            log.close()

    result = summarise(args, latency, throughput, client, nginx, max_queue, gateway_rss)
    result.update(summarise_kinds(kinds, kind_bodies, args.kind_requests))
    # Other work on the machine during the run (this run's own children are stopped by now).
    result["load_average_1min"] = {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)}
    out = args.out or RESULTS / f"gateway-overhead-{time.strftime('%Y-%m-%d')}.json"
    write_report(out, **result)
    print(markdown(result))
    print(f"\nJSON: {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


# --- processes ----------------------------------------------------------------------------------------


def find_nginx() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def write_nginx_conf(workdir: Path, listen: int, upstream: int, max_conns: int) -> None:
    """A fair, well-configured plain reverse proxy, as a provider would run it in front of a worker."""
    temp = workdir / "temp"
    temp.mkdir()
    # As root the workers would drop to `nobody` and could not use the temp dir; unprivileged, nginx
    # ignores this directive.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (workdir / "nginx.conf").write_text(f"""{user}worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/client;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 75s;
    client_max_body_size 4m;
    client_body_buffer_size 1m;
    upstream worker {{
        server {HOST}:{upstream};
        keepalive {max(64, 2 * max_conns)};
        keepalive_requests 100000;
        keepalive_timeout 75s;
    }}
    server {{
        listen {HOST}:{listen};
        location / {{
            proxy_pass http://worker;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_buffering on;
            proxy_buffer_size 64k;
            proxy_buffers 64 64k;
            proxy_busy_buffers_size 256k;
            proxy_max_temp_file_size 0;
            proxy_connect_timeout 2s;
            proxy_read_timeout 600s;
            proxy_send_timeout 600s;
        }}
    }}
}}
""")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the child's whole process group (nginx has a worker), then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        with contextlib.suppress(ProcessLookupError):  # the leader is gone: no member of its group outlives it
            os.killpg(process.pid, signal.SIGKILL)
        return


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def nginx_version(nginx: str) -> str:
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    return (done.stderr or done.stdout).strip().split("/", 1)[-1]


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"wrk (\S+)", done.stdout + done.stderr)
    return match.group(1) if match else "?"


# --- measurements -------------------------------------------------------------------------------------


def post(conn: http.client.HTTPConnection, body: bytes, path: str = PATH) -> tuple[int, int]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    return response.status, len(response.read())


def check_responses(urls: dict[str, str], body: bytes, image_bytes: int) -> None:
    """Every target answers 200 with the same image (the gateway adds to `info`, not to the image)."""
    images = {}
    for name, url in urls.items():
        response = httpx.post(url + PATH, content=body, headers={"Content-Type": "application/json"}, timeout=30)
        if response.status_code != 200:
            raise RuntimeError(f"{name}: HTTP {response.status_code}: {response.text[:200]}")
        images[name] = response.json()["images"][0]
    if len(set(images.values())) != 1 or len(images["direct"]) < image_bytes * 4 // 3:
        raise RuntimeError("the three targets did not return the same, full-size image")


def measure_latency(ports: dict[str, int], body: bytes, requests: int, warmup: int,
                    image_bytes: int) -> dict[str, list[float]]:
    """Seconds per request, one keep-alive connection per target, targets interleaved round by round."""
    conns = {name: http.client.HTTPConnection(HOST, port, timeout=30) for name, port in ports.items()}
    targets = tuple(ports)
    samples: dict[str, list[float]] = {name: [] for name in targets}
    try:
        for round_no in range(warmup + requests):
            shift = round_no % len(targets)
            for name in targets[shift:] + targets[:shift]:  # rotate who goes first
                started = time.perf_counter()
                status, size = post(conns[name], body)
                elapsed = time.perf_counter() - started
                if status != 200 or size < image_bytes:
                    raise RuntimeError(f"{name}: HTTP {status}, {size} bytes in round {round_no}")
                if round_no >= warmup:
                    samples[name].append(elapsed)
    finally:
        for conn in conns.values():
            conn.close()
    return samples


def request_kinds(init_side: int) -> dict[str, dict]:
    """The same seeded request as txt2img, as an img2img of a noisy init image (PNG cannot compress
    noise: the upload is as large as a photo's), and as a hires-fix txt2img ending at the same size."""
    noise = np.random.default_rng(0).integers(0, 256, (init_side, init_side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG", compress_level=1)
    init = base64.b64encode(out.getvalue()).decode("ascii")
    return {
        "txt2img": BODY,
        "img2img": {**BODY, "init_images": [init], "denoising_strength": 0.5},
        "hires": {**BODY, "width": BODY["width"] // 2, "height": BODY["height"] // 2, "enable_hr": True,
                  "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5},
    }


def measure_kinds(ports: dict[str, int], bodies: dict[str, dict], requests: int, warmup: int,
                  image_bytes: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per request of each kind, direct and through the gateway, interleaved as in
    `measure_latency`; first checks that both answer each kind with the same image."""
    encoded = {kind: json.dumps(body).encode() for kind, body in bodies.items()}
    urls = {name: f"http://{HOST}:{port}" for name, port in ports.items()}
    for kind, body in encoded.items():
        images = set()
        for name, url in urls.items():
            response = httpx.post(url + KIND_PATHS[kind], content=body, headers={"Content-Type": "application/json"},
                                  timeout=60)
            if response.status_code != 200:
                raise RuntimeError(f"{kind} on {name}: HTTP {response.status_code}: {response.text[:200]}")
            images.add(response.json()["images"][0])
        if len(images) != 1:
            raise RuntimeError(f"{kind}: direct and gateway answered different images")
    conns = {name: http.client.HTTPConnection(HOST, port, timeout=60) for name, port in ports.items()}
    order = [(kind, name) for kind in encoded for name in ports]
    samples: dict[str, dict[str, list[float]]] = {kind: {name: [] for name in ports} for kind in encoded}
    try:
        for round_no in range(warmup + requests):
            shift = round_no % len(order)
            for kind, name in order[shift:] + order[:shift]:
                started = time.perf_counter()
                status, size = post(conns[name], encoded[kind], KIND_PATHS[kind])
                elapsed = time.perf_counter() - started
                if status != 200 or size < image_bytes:
                    raise RuntimeError(f"{kind} on {name}: HTTP {status}, {size} bytes in round {round_no}")
                if round_no >= warmup:
                    samples[kind][name].append(elapsed)
    finally:
        for conn in conns.values():
            conn.close()
    return samples


def summarise_kinds(kinds: dict[str, dict[str, list[float]]], bodies: dict[str, dict], requests: int) -> dict:
    """Per kind: direct and gateway p50/p95/mean ms, the gateway's p50 over the worker's, and that
    ratio over txt2img's."""
    per_kind = {}
    for kind, sides in kinds.items():
        stats = {}
        for name, values in sides.items():
            ms = sorted(1000 * v for v in values)
            stats[name] = {"n": len(ms), "mean": round(statistics.fmean(ms), 3),
                           **{f"p{p}": round(percentile(ms, p), 3) for p in (50, 95)}}
        per_kind[kind] = {
            "direct_ms": stats["direct"], "gateway_ms": stats["gateway"],
            "added_ms_p50": round(stats["gateway"]["p50"] - stats["direct"]["p50"], 3),
            "gateway_over_direct_p50": round(stats["gateway"]["p50"] / stats["direct"]["p50"], 4),
            "request_bytes": len(json.dumps(bodies[kind])),
        }
    base = per_kind["txt2img"]["gateway_over_direct_p50"]
    return {"kinds": per_kind, "kind_requests": requests,
            "kind_ratio_over_txt2img": {kind: round(v["gateway_over_direct_p50"] / base, 4)
                                        for kind, v in per_kind.items()}}


WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]
"""


def run_wrk(wrk: str, url: str, body: bytes, connections: int, duration: float, workdir: Path) -> dict:
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body.decode()))
    command = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "10s", "--latency",
               "-s", str(script), url + PATH]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=True)
    text = done.stdout
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    requests = re.search(r"(\d+) requests in ([\d.]+)(m?s)", text)
    percentiles = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)\s*$", text, re.M))  # "1.24s " is padded
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "requests": int(requests.group(1)) if requests else None,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
        "latency_ms": {f"p{k}": _wrk_ms(v) for k, v in percentiles.items()},
    }


def _wrk_ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit], 3)


async def run_httpx(url: str, body: bytes, connections: int, duration: float) -> dict:
    """Fallback closed loop: `connections` tasks posting back to back until the deadline."""
    latencies: list[float] = []
    failures = 0
    deadline = time.monotonic() + duration
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def loop() -> None:
            nonlocal failures
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = await client.post(url + PATH, content=body, headers={"Content-Type": "application/json"})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                failures += not ok

        started = time.monotonic()
        await asyncio.gather(*(loop() for _ in range(connections)))
        elapsed = time.monotonic() - started
    ms = sorted(1000 * x for x in latencies)
    return {"requests_per_s": round(len(latencies) / elapsed, 2), "requests": len(latencies), "non_2xx": failures,
            "socket_errors": 0, "latency_ms": {f"p{p}": round(percentile(ms, p), 3) for p in (50, 90, 99)}}


# --- report -------------------------------------------------------------------------------------------


def summarise(args: argparse.Namespace, latency: dict[str, list[float]], throughput: dict[int, dict[str, dict]],
              client: str, nginx: str | None, max_queue: int, gateway_rss: int | None) -> dict:
    """The results; without nginx (--smoke only) its figures and the goal's comparison are null."""
    stats = {}
    for name, values in latency.items():
        ms = sorted(1000 * v for v in values)
        stats[name] = {"n": len(ms), "mean": round(statistics.fmean(ms), 3), "min": round(ms[0], 3),
                       **{f"p{p}": round(percentile(ms, p), 3) for p in (50, 95, 99)}}
    added = {name: {k: round(stats[name][k] - stats["direct"][k], 3) for k in ("p50", "p95", "p99", "mean")}
             for name in stats if name != "direct"}
    nginx_p50 = added["nginx"]["p50"] if nginx else 0.0
    ratio_added = round(added["gateway"]["p50"] / nginx_p50, 2) if nginx_p50 > 0 else None
    rps = {str(c): {name: per[name]["requests_per_s"] for name in per} for c, per in throughput.items()}
    rps_ratio = {c: round(v["gateway"] / v["nginx"], 3) if nginx else None for c, v in rps.items()}
    under_2ms = added["gateway"]["p50"] < 2.0
    within_2x = ratio_added is not None and ratio_added <= 2.0
    return {
        "machine": f"{machine()}, nginx {nginx_version(nginx) if nginx else 'not installed (--smoke: skipped)'}",
        "setup": {
            "worker": f"sdxlpool sim-worker --gpu-model A100 --step-seconds 0 --image-bytes {args.image_bytes} "
                      f"--max-queue {max_queue}",
            "gateway": "sdxlpool gateway --backends FILE (one backend, defaults: scrape every 0.1 s)",
            "nginx": "worker_processes 1, proxy_http_version 1.1, upstream keepalive, proxy_buffers 64 64k, "
                     "access_log off",
            "request": BODY,
            "latency_client": "http.client, one keep-alive connection per target, targets interleaved per round",
            "throughput_client": client,
            "requests": args.requests, "warmup": args.warmup, "duration_s": args.duration,
        },
        "latency_ms": stats,
        "added_latency_ms": added,
        "gateway_added_over_nginx_added_p50": ratio_added,
        "throughput": {str(c): v for c, v in throughput.items()},
        "requests_per_s": rps,
        "gateway_over_nginx_requests_per_s": rps_ratio,
        "gateway_rss_kib_after": gateway_rss,
        "goal": {"p50_added_under_2ms": under_2ms, "within_2x_of_nginx": within_2x, "met": under_2ms and within_2x},
    }


def markdown(result: dict) -> str:
    lat, added, rps = result["latency_ms"], result["added_latency_ms"], result["requests_per_s"]
    cs = list(rps)
    head = "| target | p50 ms | p95 ms | p99 ms | added p50 ms | added p95 ms | added p99 ms |" + "".join(
        f" req/s C={c} |" for c in cs)
    lines = [head, "|" + "---|" * (7 + len(cs))]
    for name in lat:
        extra = added.get(name, {"p50": 0.0, "p95": 0.0, "p99": 0.0})
        cells = [name, *(f"{lat[name][k]:.2f}" for k in ("p50", "p95", "p99")),
                 *(("–",) * 3 if name == "direct" else (f"{extra[k]:+.2f}" for k in ("p50", "p95", "p99"))),
                 *(f"{rps[c][name]:.1f}" for c in cs)]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = ", ".join(f"C={c}: {v}" for c, v in result["gateway_over_nginx_requests_per_s"].items())
    goal = result["goal"]
    lines += [
        "",
        f"Gateway added p50 / nginx added p50: {result['gateway_added_over_nginx_added_p50']}",
        f"Gateway req/s / nginx req/s: {ratios}",
        f"Goal (p50 added < 2 ms: {goal['p50_added_under_2ms']}; within 2x of nginx: {goal['within_2x_of_nginx']}):"
        f" {'MET' if goal['met'] else 'NOT MET'}",
    ]
    if "kinds" in result:
        lines += ["", "| kind | request bytes | direct p50 ms | gateway p50 ms | added p50 ms | gateway/direct p50 |"
                      " ratio / txt2img's |", "|---|---|---|---|---|---|---|"]
        for kind, row in result["kinds"].items():
            lines.append(f"| {kind} | {row['request_bytes']} | {row['direct_ms']['p50']:.2f} | "
                         f"{row['gateway_ms']['p50']:.2f} | {row['added_ms_p50']:+.2f} | "
                         f"{row['gateway_over_direct_p50']:.3f} | {result['kind_ratio_over_txt2img'][kind]:.3f} |")
    bad = [f"{name} C={c}: {r['non_2xx']} non-2xx, {r['socket_errors']} socket errors"
           for c, per in result["throughput"].items() for name, r in per.items() if r["non_2xx"] or r["socket_errors"]]
    if bad:
        lines.append("Errors during the throughput runs: " + "; ".join(bad))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
