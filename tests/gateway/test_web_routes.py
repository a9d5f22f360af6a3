"""The web page's HTTP side: GET / and /static/* with their security headers and caching, the
files themselves (no inline script, nothing from another origin), and GET /v1/pool in front of
sim-workers. The page in a real browser is tests/web."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from importlib import resources

import httpx
import pytest

from tests.gateway.conftest import Sim, body, start_gateway, write_backends
from tests.polling import wait_for

STATIC = ("app.js", "style.css", "favicon.ico")
TEXT_FILES = ("index.html", "app.js", "style.css")


@pytest.fixture(scope="module")
def sims() -> Iterator[list[Sim]]:
    started = [Sim("a100", 0.05), Sim("rtx", 0.02, "--gpu-model", "RTX-3090")]
    try:
        for sim in started:
            sim.wait_ready()
        yield started
    finally:
        for sim in started:
            sim.stop()


@pytest.fixture(scope="module")
def gateway(sims: list[Sim], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    entries = [{**sims[0].backend(), "pricePerHour": 1.1}, {**sims[1].backend(), "pricePerHour": 0.35},
               {**sims[1].backend(), "name": "rtx-cheap", "pricePerHour": 0.2},
               {"name": "h100", "url": "http://127.0.0.1:9", "gpu": "NVIDIA-H100-80GB-HBM3"}]
    path = write_backends(tmp_path_factory.mktemp("web-routes") / "backends.yaml", entries)
    with start_gateway(path) as server:
        server.wait_ready()
        yield server


def web_file(name: str) -> bytes:
    return resources.files("sdxlpool.gateway.web").joinpath(name).read_bytes()


def directives(csp: str) -> dict[str, set[str]]:
    out = {}
    for part in csp.split(";"):
        name, *values = part.split()
        out[name] = set(values)
    return out


def assert_security_headers(response: httpx.Response) -> None:
    csp = directives(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == {"'self'"}
    assert csp["script-src"] == {"'self'"}  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert csp["style-src"] == {"'self'"}
    assert csp["img-src"] == {"'self'", "data:", "blob:"}
    assert csp["connect-src"] <= {"'self'", "ws:", "wss:"} and "'self'" in csp["connect-src"]
    assert csp["frame-ancestors"] == {"'none'"} and csp["object-src"] == {"'none'"}
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_the_page_is_served_with_security_headers(gateway) -> None:
    response = httpx.get(gateway.url + "/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert_security_headers(response)
    assert response.headers["Cache-Control"] == "no-cache" and response.headers["ETag"]
    assert response.content == web_file("index.html")
    assert '<script type="module" src="/static/app.js"></script>' in response.text
    # Revalidation: the same ETag is a 304 without a body, still with the headers.
    again = httpx.get(gateway.url + "/", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert_security_headers(again)
    head = httpx.head(gateway.url + "/")
    assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize(("name", "media_type"), [
    ("app.js", "text/javascript; charset=utf-8"),
    ("style.css", "text/css; charset=utf-8"),
    ("favicon.ico", "image/vnd.microsoft.icon"),
])
def test_static_files(gateway, name: str, media_type: str) -> None:
    response = httpx.get(f"{gateway.url}/static/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == media_type
    assert response.content == web_file(name)
    assert_security_headers(response)
    assert response.headers["Cache-Control"] == "no-cache"


def test_the_icon_is_also_where_browsers_look_for_it(gateway) -> None:
    response = httpx.get(gateway.url + "/favicon.ico")
    assert response.status_code == 200 and response.content == web_file("favicon.ico")


@pytest.mark.parametrize("path", [
    "/static/nope.js", "/static/__init__.py", "/static/..%2Froutes%2Fweb.py", "/static/.hidden.css",
    "/static/index", "/static/",
])
def test_nothing_else_is_served_from_static(gateway, path: str) -> None:
    response = httpx.get(gateway.url + path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


def test_every_file_the_page_names_exists() -> None:
    html = web_file("index.html").decode()
    named = set(re.findall(r'(?:src|href)="/static/([^"]+)"', html))
    assert named == set(STATIC)
    for name in named:
        assert web_file(name)


@pytest.mark.parametrize("name", TEXT_FILES)
def test_no_other_origin_anywhere(name: str) -> None:
    """The page must work with no internet: no CDN, no web font, no absolute URL of any kind."""
    text = web_file(name).decode()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(?:src|href|url)\s*[=(]\s*["']?//""", text)  # protocol-relative
    assert "@import" not in text


def test_no_inline_script_or_style() -> None:
    """What the CSP would block anyway, checked at the source: everything is in app.js and style.css."""
    html = web_file("index.html").decode()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script type="module" src="/static/app.js">']
    assert "<style" not in html and " style=" not in html
    assert not re.search(r"\son[a-z]+\s*=", html)  # onclick=... handlers
    script = web_file("app.js").decode()
    for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert forbidden not in script, forbidden


def test_every_input_has_a_label() -> None:
    html = web_file("index.html").decode()
    ids = re.findall(r'<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"', html)
    labelled = set(re.findall(r'<label\b[^>]*\bfor="([^"]+)"', html)) | set(
        re.findall(r'<(?:input|select|textarea|progress)\b[^>]*\bid="([^"]+)"[^>]*\baria-label=', html))
    assert ids and set(ids) <= labelled, set(ids) - labelled
    assert 'role="alert"' in html and 'aria-live="polite"' in html and "<progress" in html


def pool(gateway) -> dict:
    response = httpx.get(gateway.url + "/v1/pool")
    assert response.status_code == 200
    return response.json()


def by_model(gateway) -> dict[str, dict]:
    return {m["gpu_model"]: m for m in pool(gateway)["models"]}


def test_pool_per_gpu_model(gateway) -> None:
    data = pool(gateway)
    assert data["api_key_required"] is False
    assert data["defaults"] == {"steps": 25, "width": 128, "height": 128}  # the gateway's (start_gateway's)
    wait_for(lambda: by_model(gateway)["rtx-3090"]["up"] == 2, timeout=10)
    models = by_model(gateway)
    assert [m["gpu_name"] for m in data["models"]] == ["A100", "H100 80GB", "RTX 3090"]
    assert models["a100"] == {"gpu_model": "a100", "gpu_name": "A100", "workers": 1, "up": 1, "busy": 0,
                              "pricePerHour": 1.1}
    assert models["rtx-3090"]["workers"] == 2 and models["rtx-3090"]["pricePerHour"] == 0.2
    assert models["h100-80gb"] == {"gpu_model": "h100-80gb", "gpu_name": "H100 80GB", "workers": 1, "up": 0,
                                   "busy": 0, "pricePerHour": None}


def test_a_worker_with_work_is_busy_until_it_is_done(gateway) -> None:
    # 30 steps at 1024x1024 on the A100 sim: 1.5 s of work.
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(response=httpx.post(
        gateway.url + "/v1/generate", json=body(steps=30, gpus=["A100"]), timeout=30)))
    thread.start()
    try:
        wait_for(lambda: by_model(gateway)["a100"]["busy"] == 1, timeout=10)
        assert by_model(gateway)["rtx-3090"]["busy"] == 0
    finally:
        thread.join(timeout=30)
    assert result["response"].status_code == 200, result["response"].text
    wait_for(lambda: by_model(gateway)["a100"]["busy"] == 0, timeout=10)
