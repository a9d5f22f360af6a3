"""What `sdxlpool generate` shows, rendered without a terminal: the progress line for each gateway
event, the line-per-change and redraw-in-place reporters, the summary, the error line and the
URL mapping."""

from __future__ import annotations

import io
import struct
import zlib

import pytest

from sdxlpool.client._cli import ProgressView, Reporter, error_line, png_size, progress_line, summary_lines

ASSIGNED = {"event": "assigned", "gpu_model": "a100-80gb", "gpu_name": "A100 80GB", "provider": "Foundry",
            "location": "US-East", "worker": "a100-1", "attempt": 1}


def progress(step: int, steps: int = 20, eta: float | None = None) -> dict:
    return {"event": "progress", "step": step, "steps": steps, "progress": step / steps, "eta_seconds": eta}


@pytest.mark.parametrize(
    ("event", "where", "expected"),
    [
        ({"event": "queued", "position": 0}, None, "queued at the gateway"),
        ({"event": "queued", "position": 3}, None, "queued at the gateway (3 ahead)"),
        ({"event": "starting", "gpu_models": ["h100-80gb", "l40s"], "gpu_names": ["H100 80GB", "L40S"],
          "waited_seconds": 0.0}, None, "starting a worker (H100 80GB, L40S)"),
        ({"event": "starting"}, None, "starting a worker"),
        (ASSIGNED, None, "running on A100 80GB (Foundry, US-East; worker a100-1)"),
        ({**ASSIGNED, "attempt": 2, "gpu_name": "RTX 3090", "worker": "rtx-1"}, None,
         "attempt 2: retrying on RTX 3090 (Foundry, US-East; worker rtx-1)"),
        ({**ASSIGNED, "provider": "", "location": ""}, None, "running on A100 80GB (worker a100-1)"),
        ({"event": "assigned", "gpu_model": "l40"}, None, "running on l40"),
        (progress(0), ASSIGNED, "[------------------------] step 0/20   0% on A100 80GB"),
        (progress(5), ASSIGNED, "[######------------------] step 5/20  25% on A100 80GB"),
        (progress(10, eta=3.14), ASSIGNED, "[############------------] step 10/20  50% on A100 80GB, 3.1 s left"),
        (progress(20, eta=0.0), ASSIGNED, "[########################] step 20/20 100% on A100 80GB"),
        (progress(7), None, "[########----------------] step 7/20  35%"),
        ({"event": "progress", "step": 0, "steps": 0, "progress": 0.5}, None,
         "[############------------] step 0/0  50%"),
        ({"event": "progress", "step": 30, "steps": 20}, None, "[########################] step 30/20 100%"),
        ({"event": "done", "image": "..."}, ASSIGNED, None),
        ({"event": "error", "status": 503}, ASSIGNED, None),
        ({"event": "something-new"}, None, None),
    ],
    ids=["queued", "queued-behind", "starting", "starting-bare", "assigned", "failover", "assigned-bare", "assigned-slug-only", "step-0",
         "step-5", "eta", "last-step", "no-assigned", "no-steps", "overshoot", "done", "error", "unknown"],
)
def test_progress_line(event: dict, where: dict | None, expected: str | None) -> None:
    assert progress_line(event, where) == expected


def test_bar_width() -> None:
    assert progress_line(progress(1, 2), bar_width=4) == "[##--] step 1/2  50%"


def test_view_reports_changes_and_fills_the_bar_when_done() -> None:
    view = ProgressView(bar_width=4)
    seen = [view.update(event) for event in (
        {"event": "queued", "position": 0}, ASSIGNED, progress(2, 4, eta=1.0), progress(2, 4, eta=0.9),
        progress(3, 4), {"event": "done", "image": "x"},
    )]
    assert [changed for _, changed in seen] == [True, True, True, False, True, True]
    assert seen[3][0] == "[##--] step 2/4  50% on A100 80GB, 0.9 s left"  # redrawn on a terminal only
    assert seen[-1][0] == "[####] step 4/4 100% on A100 80GB"


def test_view_shows_nothing_at_done_without_progress() -> None:
    view = ProgressView()
    view.update(ASSIGNED)
    assert view.update({"event": "done"}) == (None, False)
    assert view.update({"event": "error", "status": 500}) == (None, False)


def test_reporter_writes_a_line_per_change_when_not_a_terminal() -> None:
    out = io.StringIO()
    report = Reporter(out, tty=False)
    for event in ({"event": "queued", "position": 0}, ASSIGNED, progress(1), progress(1), progress(2),
                  {"event": "done"}):
        report(event)
    report.finish()
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["queued at the gateway", "running on A100 80GB (Foundry, US-East; worker a100-1)"]
    assert [line.split("] ")[1].split()[:2] for line in lines[2:]] == [["step", "1/20"], ["step", "2/20"],
                                                                       ["step", "20/20"]]
    assert "\r" not in out.getvalue()


def test_reporter_redraws_one_line_on_a_terminal() -> None:
    out = io.StringIO()
    report = Reporter(out, tty=True, columns=40)
    report({"event": "queued", "position": 0})
    report(ASSIGNED)  # longer than 40 columns: cut to 39 so it never wraps
    report(progress(2, 4))
    report.finish()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    frames = text.rstrip("\n").split("\r")[1:]
    assert frames[0] == "queued at the gateway"
    assert frames[1] == "running on A100 80GB (Foundry, US-East;"
    assert frames[2].startswith("[############------------] step 2/4")
    assert len(frames[2]) == 39  # padded over the longer line before it, within the width


def test_quiet_reporter_writes_nothing() -> None:
    out = io.StringIO()
    report = Reporter(out, tty=True, enabled=False)
    report(ASSIGNED)
    report.finish()
    assert out.getvalue() == ""


def tiny_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_png_size() -> None:
    assert png_size(tiny_png(3, 2)) == (3, 2)
    assert png_size(b"GIF89a" + b"\x00" * 30) is None
    assert png_size(b"") is None


def test_summary_lines() -> None:
    metadata = {"output": "out.png", "seed": 42, "gpu_model": "a100-80gb", "gpu_name": "A100 80GB",
                "provider": "Foundry", "location": "US-East", "worker": "a100-1", "attempts": 1,
                "timings": {"queue_seconds": 0.0123, "inference_seconds": 2.5, "total_seconds": 2.61}}
    lines = summary_lines(metadata, image=tiny_png(3, 2))
    assert lines[0].startswith("wrote out.png (3x2 PNG, ")
    assert lines[1:] == ["GPU:       A100 80GB", "provider:  Foundry", "location:  US-East", "worker:    a100-1",
                         "seed:      42", "queue:     0.01 s", "inference: 2.50 s", "total:     2.61 s",
                         "attempts:  1"]
    bare = summary_lines({"output": "x.png", "gpu_model": "l40", "provider": "", "timings": {}})
    assert bare[:3] == ["wrote x.png", "GPU:       l40", "provider:  -"]
    assert "inference: -" in bare


def test_error_line() -> None:
    from sdxlpool.client import GatewayError, GatewayTimeout, GatewayUnreachable

    assert error_line(GatewayError(503, "no_backend", "no backend of h100\n  is up")) == \
        "sdxlpool generate: error: 503 no_backend: no backend of h100 is up"
    assert error_line(GatewayError(429, "rate_limited", "slow down", retry_after=3)) == \
        "sdxlpool generate: error: 429 rate_limited: slow down (retry after 3 s)"
    assert error_line(GatewayUnreachable("http://x:1", "Connection refused")) == \
        "sdxlpool generate: error: cannot connect to the gateway at http://x:1: Connection refused"
    assert error_line(GatewayTimeout(5)).startswith("sdxlpool generate: error: no result after 5 s")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080", "ws://127.0.0.1:8080/v1/ws"),
        ("https://sdxl.example.com/", "wss://sdxl.example.com/v1/ws"),
        ("HTTP://host/prefix", "ws://host/prefix/v1/ws"),
        ("ws://host:9/v1/ws", "ws://host:9/v1/ws"),
        ("wss://host/v1/ws?api_key=k", "wss://host/v1/ws?api_key=k"),
    ],
)
def test_websocket_url(url: str, expected: str) -> None:
    from sdxlpool.client import websocket_url

    assert websocket_url(url) == expected


@pytest.mark.parametrize(("url", "mention"), [("ftp://host", "http://"), ("localhost:8080", "http://"),
                                              ("http://", "no host"), ("http://h:port", "port")])
def test_websocket_url_rejects(url: str, mention: str) -> None:
    from sdxlpool.client import websocket_url

    with pytest.raises(ValueError, match=mention):
        websocket_url(url)


def test_result_from_done_event() -> None:
    import base64

    from sdxlpool.client import ClientError, Result

    png = tiny_png(2, 2)
    event = {"event": "done", "images": [base64.b64encode(png).decode()], "seed": 7, "gpu_model": "rtx-3090",
             "gpu_name": "RTX 3090", "provider": "p", "location": "l", "worker": "w", "attempts": 2,
             "timings": {"queue_seconds": 0.1, "inference_seconds": 1.0, "total_seconds": 1.2}, "info": {"steps": 4}}
    result = Result.from_event(event)
    assert result.image == png and result.seed == 7 and result.attempts == 2
    metadata = result.metadata()
    assert metadata["timings"] == event["timings"] and metadata["info"] == {"steps": 4}
    assert "image" not in metadata and "images" not in metadata
    with pytest.raises(ClientError, match="no image"):
        Result.from_event({"event": "done", "images": []})
    with pytest.raises(ClientError, match="base64"):
        Result.from_event({"event": "done", "image": "not base64!"})
