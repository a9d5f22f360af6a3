"""`sdxlpool generate`: its flags, their checks, the progress line and the closing summary.

Only the standard library is imported up front (the main CLI imports this module to build its
parser, and must start without an HTTP or WebSocket library); the WebSocket client is imported
when the command runs. Bad values exit 2 with one line: argparse checks each flag's value, and
`ConfigError` the rules across flags and the environment. The gateway's own refusals and an
unreachable gateway exit 1, also on one line.

What is printed where: progress goes to stderr (one line redrawn with \\r on a terminal, one line
per change otherwise), the summary (or, with --json, the result's metadata) to stdout. Rendering
is pure (`progress_line`, `ProgressView`, `summary_lines`), so it is tested without a terminal.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any

from sdxlpool._args import at_least, between, more_than
from sdxlpool.client._defaults import API_KEY_ENV, DEFAULT_GATEWAY, GATEWAY_ENV
from sdxlpool.errors import ConfigError, InvalidRequest

__all__ = ["add_parser", "run_generate", "progress_line", "ProgressView", "Reporter", "summary_lines",
           "png_size", "error_line", "DEFAULT_GATEWAY", "GATEWAY_ENV", "API_KEY_ENV"]

DEFAULT_TIMEOUT = 600.0
INTERRUPT_GRACE = 5.0  # seconds from Ctrl-C to exit 130 at the latest
EXIT_INTERRUPTED = 130
BAR_WIDTH = 24
_PROG = "sdxlpool generate"


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Register `generate` on the CLI's sub-parsers (`parser.add_subparsers(...)`); returns its parser."""
    gen = subcommands.add_parser(
        "generate", help="generate an image through the gateway, with a progress bar",
        description="Send one txt2img (or, with --init-image, img2img; with --mask too, inpainting) request "
        "to the gateway's WebSocket (/v1/ws), show its progress "
        "(queue, the GPU it runs on, step k/n), write the PNG and print where and how long it ran. "
        "Unset options take the pool's defaults. Exit status: 0 done, 1 the gateway refused or could not "
        "be reached, 2 bad arguments, 130 interrupted (the job is cancelled).")
    gen.add_argument("prompt", metavar="PROMPT", type=_text, help="what to draw")
    gen.add_argument("--gateway", metavar="URL",
                     help=f"the gateway: http(s):// or ws(s):// (default ${GATEWAY_ENV}, else {DEFAULT_GATEWAY})")
    gen.add_argument("--gpu", metavar="MODELS", type=_gpu_list,
                     help="allowed GPU models, preferred first, e.g. A100,RTX-3090 (default: any in the pool)")
    gen.add_argument("--negative", metavar="TEXT", help="negative prompt")
    gen.add_argument("--sampler", metavar="NAME", type=_text,
                     help='A1111 sampler name, e.g. "DPM++ 2M Karras" or "Euler a"')
    gen.add_argument("--steps", metavar="N", type=_positive_int, help="denoising steps")
    gen.add_argument("--cfg", metavar="X", type=_cfg, help="CFG scale (guidance)")
    gen.add_argument("--width", metavar="N", type=_positive_int, help="image width in pixels")
    gen.add_argument("--height", metavar="N", type=_positive_int, help="image height in pixels")
    gen.add_argument("--size", metavar="WxH", type=_size, help="width and height at once, e.g. 1024x768")
    gen.add_argument("--seed", metavar="N", type=_seed,
                     help="seed, for the same image again (default -1: random; the one used is printed)")
    gen.add_argument("--refiner-switch-at", metavar="X", type=_fraction,
                     help="fraction of the steps after which the refiner takes over (0 to 1)")
    gen.add_argument("--init-image", metavar="PATH", type=Path,
                     help="img2img: start from this image (PNG, JPEG or WebP); the output takes its size unless "
                     "--size/--width/--height say otherwise")
    gen.add_argument("--mask", metavar="PATH", type=Path,
                     help="inpainting (with --init-image): white where the image is redrawn, the init image's size")
    gen.add_argument("--denoising-strength", metavar="X", type=_fraction,
                     help="how much of the init image (or, with --hires, of the first pass) is redrawn, 0 to 1")
    gen.add_argument("--hires", metavar="SCALE", type=_hires_scale,
                     help="hires fix: upscale the first pass by SCALE (1 to 8) and denoise it again")
    gen.add_argument("-o", "--output", metavar="PATH", type=Path,
                     help="PNG to write, or a folder for it (default: sdxl-SEED.png here)")
    gen.add_argument("--api-key", metavar="KEY", help=f"the gateway's API key (default ${API_KEY_ENV})")
    gen.add_argument("--timeout", metavar="S", type=_positive_float, default=DEFAULT_TIMEOUT,
                     help=f"give up (and cancel the job) after this many seconds in all (default {DEFAULT_TIMEOUT:g})")
    gen.add_argument("--json", action="store_true",
                     help="print the result's metadata as JSON on stdout instead of the summary (no image data)")
    gen.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    gen.set_defaults(handler=run_generate)
    return gen


def run_generate(args: argparse.Namespace) -> int:
    """The `generate` handler: check the options, run the generation, write the PNG, report."""
    with ctrl_c_exits(EXIT_INTERRUPTED, grace=INTERRUPT_GRACE):
        return _generate_command(args)


@contextmanager
def ctrl_c_exits(status: int, *, grace: float) -> Iterator[None]:
    """Ctrl-C, from here on: KeyboardInterrupt in the main thread, and exit `status` within `grace` s.

    Installed even when the process started with SIGINT ignored, which is how a non-interactive
    shell starts a background job (`sdxlpool generate ... &` in a script, or a CI script started
    with `&`): Python then leaves SIGINT ignored, and Ctrl-C (or `kill -INT`) would do nothing
    while the job runs on. The KeyboardInterrupt unwinds as usual (closing the socket, which makes the gateway cancel the
    job; the handler turns it into `status`). Should the unwinding itself get stuck (a close
    handshake the gateway never answers, a lock a KeyboardInterrupt left held inside the WebSocket
    library), a timer started by the first Ctrl-C ends the process with `status` anyway: a person
    pressing Ctrl-C gets their prompt back, always. Only in the main thread (signals go nowhere else).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    watchdog = threading.Timer(grace, _exit_now, (status,))
    watchdog.daemon = True

    def on_interrupt(signum: int, frame: Any) -> None:
        if not watchdog.is_alive() and not watchdog.finished.is_set():
            watchdog.start()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        watchdog.cancel()


def _exit_now(status: int) -> None:
    """The last resort of `ctrl_c_exits`: exit without unwinding the stuck main thread."""
    for stream in (sys.stderr, sys.stdout):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


def _generate_command(args: argparse.Namespace) -> int:
    # 1. Options: every rule that needs no gateway, before connecting.
    gateway = _gateway_url(args.gateway)
    width, height = _dimensions(args)
    output = _output(args.output)
    api_key = args.api_key if args.api_key is not None else _environment().api_key or None
    images = _image_fields(args)

    # 2. Generate, showing progress on stderr.
    from sdxlpool.client._ws import ClientError, generate

    reporter = Reporter(sys.stderr, tty=_is_tty(sys.stderr), enabled=not args.quiet)
    try:
        result = generate(
            args.prompt, gateway=gateway, gpus=args.gpu or (), negative_prompt=args.negative, sampler=args.sampler,
            steps=args.steps, cfg_scale=args.cfg, width=width, height=height, seed=args.seed,
            refiner_switch_at=args.refiner_switch_at, api_key=api_key, timeout=args.timeout, on_event=reporter,
            **images,
        )
    except ClientError as exc:
        reporter.finish()
        print(error_line(exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the socket is closed by now, which makes the gateway cancel the job
        reporter.finish()
        return EXIT_INTERRUPTED
    reporter.finish()

    # 3. The PNG, then the summary.
    name = f"sdxl-{result.seed}.png" if result.seed is not None else "sdxl.png"
    path = output if output is not None and not output.is_dir() else (output or Path()) / name
    try:
        path.write_bytes(result.image)
    except OSError as exc:
        print(f"{_PROG}: error: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    metadata = {"output": str(path), **result.metadata()}
    if args.json:
        print(json.dumps(metadata, indent=2))
    else:
        print("\n".join(summary_lines(metadata, image=result.image)))
    return 0


# --- rendering (pure) ----------------------------------------------------------------------------


def progress_line(event: Mapping[str, Any], where: Mapping[str, Any] | None = None, *,
                  bar_width: int = BAR_WIDTH) -> str | None:
    """The line to show for one gateway event; `where` is the latest `assigned` event, if any.

    queued    -> "queued at the gateway (2 ahead)"
    starting  -> "starting a worker (H100 80GB)"
    assigned  -> "running on A100 80GB (Foundry, US-East; worker a100-1)"
    progress  -> "[##########--------------] step 10/25  40% on A100 80GB, 3.1 s left"
    others    -> None (the result and errors are reported by the command itself)
    """
    kind = event.get("event")
    if kind == "queued":
        ahead = _int(event.get("position"))
        return "queued at the gateway" + (f" ({ahead} ahead)" if ahead > 0 else "")
    if kind == "starting":
        names = event.get("gpu_names") or event.get("gpu_models")
        names = [str(name) for name in names] if isinstance(names, list) else []
        return "starting a worker" + (f" ({', '.join(names)})" if names else "")
    if kind == "assigned":
        attempt = _int(event.get("attempt"), 1)
        verb = "running on" if attempt <= 1 else f"attempt {attempt}: retrying on"
        return f"{verb} {_placement(event)}"
    if kind == "progress":
        step, steps = _int(event.get("step")), _int(event.get("steps"))
        fraction = step / steps if steps > 0 else _number(event.get("progress"), 0.0)
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * bar_width)
        line = f"[{'#' * filled}{'-' * (bar_width - filled)}] step {step}/{steps} {fraction:4.0%}"
        if where and (where.get("gpu_name") or where.get("gpu_model")):
            line += f" on {where.get('gpu_name') or where.get('gpu_model')}"
        eta = event.get("eta_seconds")
        if isinstance(eta, (int, float)) and math.isfinite(eta) and fraction < 1:
            line += f", {eta:.1f} s left"
        return line
    return None


class ProgressView:
    """Folds the events of one generation into the line to show.

    `update(event)` returns (line, changed): the line for this event (None when it has none) and
    whether the state changed (queued -> assigned -> another step -> ...). A line-per-change
    reporter prints only changed lines; a terminal redraws every line. On `done` the bar is shown
    full, since the last progress poll usually lands a step or two short.
    """

    def __init__(self, bar_width: int = BAR_WIDTH) -> None:
        self.bar_width = bar_width
        self.where: Mapping[str, Any] | None = None
        self.steps: int | None = None
        self._state: tuple[Any, ...] | None = None

    def update(self, event: Mapping[str, Any]) -> tuple[str | None, bool]:
        kind = event.get("event")
        if kind == "assigned":
            self.where, self.steps = event, None
        elif kind == "progress":
            self.steps = _int(event.get("steps")) or None
        elif kind == "done" and self.steps:
            event = {"event": "progress", "step": self.steps, "steps": self.steps, "progress": 1.0}
        line = progress_line(event, self.where, bar_width=self.bar_width)
        if line is None:
            return None, False
        state = (event.get("event"), event.get("position"), event.get("worker"), event.get("attempt"),
                 event.get("step"), event.get("steps"))
        changed, self._state = state != self._state, state
        return line, changed


class Reporter:
    """The `on_event` callback of the command: progress lines on `stream`.

    On a terminal one line is redrawn in place (\\r, padded over the previous one, cut to the
    terminal's width so it never wraps); elsewhere (a pipe, a log file) each change is one line.
    """

    def __init__(self, stream: IO[str], *, tty: bool, enabled: bool = True, columns: int | None = None) -> None:
        self.stream, self.tty, self.enabled = stream, tty, enabled
        self.columns = columns
        self.view = ProgressView()
        self._shown = 0  # characters on the terminal's current line

    def __call__(self, event: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        line, changed = self.view.update(event)
        if line is None:
            return
        if self.tty:
            columns = self.columns or shutil.get_terminal_size((100, 24)).columns
            line = line[:max(10, columns - 1)]
            self.stream.write("\r" + line.ljust(self._shown))
            self._shown = len(line)
        elif changed:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End the redrawn line, so what follows starts on a fresh one."""
        if self.tty and self._shown:
            self.stream.write("\n")
            self.stream.flush()
        self._shown = 0


def summary_lines(metadata: Mapping[str, Any], *, image: bytes | None = None) -> list[str]:
    """The closing report: the file written, then where and how long it ran."""
    timings = metadata.get("timings") or {}
    size = png_size(image) if image is not None else None
    wrote = f"wrote {metadata.get('output')}"
    if image is not None:
        wrote += f" ({size[0]}x{size[1]} PNG, {_kilobytes(len(image))})" if size else f" ({_kilobytes(len(image))})"
    rows = [
        ("GPU", metadata.get("gpu_name") or metadata.get("gpu_model")),
        ("provider", metadata.get("provider")),
        ("location", metadata.get("location")),
        ("worker", metadata.get("worker")),
        ("seed", metadata.get("seed")),
        ("queue", _seconds(timings.get("queue_seconds"))),
        ("inference", _seconds(timings.get("inference_seconds"))),
        ("total", _seconds(timings.get("total_seconds"))),
        ("attempts", metadata.get("attempts")),
    ]
    return [wrote] + [f"{name + ':':<11}{value if value not in (None, '') else '-'}" for name, value in rows]


def error_line(exc: Exception) -> str:
    """`sdxlpool generate: error: 429 rate_limited: ... (retry after 3 s)`, on one line."""
    status, code = getattr(exc, "status", None), getattr(exc, "code", None)
    detail = " ".join(str(getattr(exc, "detail", None) or exc).split())
    text = f"{status} {code}: {detail}" if status is not None else detail
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        text += f" (retry after {retry_after:g} s)"
    return f"{_PROG}: error: {text}"


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk; None when `data` is not a PNG."""
    if len(data) < 24 or not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _placement(event: Mapping[str, Any]) -> str:
    gpu = event.get("gpu_name") or event.get("gpu_model") or "a worker"
    where = ", ".join(str(part) for part in (event.get("provider"), event.get("location")) if part)
    worker = event.get("worker")
    details = "; ".join(part for part in (where, f"worker {worker}" if worker else "") if part)
    return f"{gpu} ({details})" if details else str(gpu)


def _seconds(value: Any) -> str | None:
    return f"{value:.2f} s" if isinstance(value, (int, float)) else None


def _kilobytes(count: int) -> str:
    return f"{count / 1000:.1f} kB" if count >= 1000 else f"{count} B"


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else default


def _is_tty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# --- checks: flag values (argparse) and rules across flags (ConfigError) ------------------------


def _environment() -> Any:
    from sdxlpool.client._settings import ClientSettings  # pydantic-settings: only when the command runs

    return ClientSettings()


def _gateway_url(flag: str | None) -> str:
    from sdxlpool.client._ws import websocket_url

    if flag is not None:
        source, value = "--gateway", flag
    elif environment := _environment().gateway_url:
        source, value = f"${GATEWAY_ENV}", environment
    else:
        return DEFAULT_GATEWAY
    try:
        websocket_url(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return value.strip()


def _dimensions(args: argparse.Namespace) -> tuple[int | None, int | None]:
    if args.size is not None:
        if args.width is not None or args.height is not None:
            raise ConfigError("--size and --width/--height: give one or the other")
        return args.size
    return args.width, args.height


def _image_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The request fields of --init-image, --mask, --denoising-strength and --hires: each file read
    and checked to be an image here (a bad one exits 2 before anything is sent)."""
    fields: dict[str, Any] = {}
    if args.mask is not None and args.init_image is None:
        raise ConfigError("--mask: inpainting needs --init-image too")
    if args.init_image is not None:
        fields["init_images"] = [_image_file("--init-image", args.init_image)]
    if args.mask is not None:
        fields["mask"] = _image_file("--mask", args.mask)
    if args.denoising_strength is not None:
        if args.init_image is None and args.hires is None:
            raise ConfigError("--denoising-strength: applies to --init-image or --hires; give one of them")
        fields["denoising_strength"] = args.denoising_strength
    if args.hires is not None:
        if args.init_image is not None:
            raise ConfigError("--hires: hires fix is for txt2img; it does not go with --init-image")
        fields.update(enable_hr=True, hr_scale=args.hires)
    return fields


_MAX_INPUT_PIXELS = 6144 * 6144  # the pool's own bound (RequestLimits.max_input_pixels); it checks again


def _image_file(flag: str, path: Path) -> str:
    """The file as base64, once its header shows an image PIL reads (PNG, JPEG, WebP, ...)."""
    import base64

    from sdxlpool._images import probe_image

    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: {exc.strerror or exc}") from None
    try:
        probe_image(flag, data, max_pixels=_MAX_INPUT_PIXELS)
    except InvalidRequest as exc:
        raise ConfigError(f"{flag} {path}: {exc.message}") from None
    return data


def _output(path: Path | None) -> Path | None:
    """Check, before any GPU work, that the PNG can go where asked (a file, or a folder for it)."""
    if path is None or path.is_dir():
        return path
    parent = path.parent
    if not parent.is_dir():
        raise ConfigError(f"--output {path}: no such folder {parent}")
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--output {path}: the image is a PNG; name the file *.png")
    return path


_positive_int = at_least(int, 1)
_positive_float = more_than(float, 0)
_cfg = at_least(float, 0)
_fraction = between(float, 0, 1)
_seed = at_least(int, -1, rule="-1 (random) or more")
_hires_scale = between(float, 1, 8)


def _size(text: str) -> tuple[int, int]:
    width, sep, height = text.strip().lower().partition("x")
    try:
        if not sep:
            raise ValueError
        size = int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 1024x768, got {text!r}") from None
    if min(size) < 1:
        raise argparse.ArgumentTypeError(f"width and height must be 1 or more, got {text!r}")
    return size


def _gpu_list(text: str) -> list[str]:
    """`A100,RTX-3090` -> ["A100", "RTX-3090"]; the gateway normalises and judges the names."""
    items = [item.strip() for item in text.split(",")]
    if not any(items) or not all(items):
        raise argparse.ArgumentTypeError(f"expected GPU models separated by commas, e.g. A100,RTX-3090, got {text!r}")
    return items


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text
