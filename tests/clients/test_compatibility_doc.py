"""docs/a1111-compatibility.md stays true: its route table and field tables against the real apps.

The worker's and the gateway's FastAPI apps are built (`sdxlpool._reference.http_page.apps`) and never
started. Checked: a route the doc marks `implemented` or `different` exists on that app with that
method, one marked `absent` does not; every `/sdapi/` and `/internal/` route the apps have is in the
doc; every A1111 route (v1.10's `modules/api/api.py`, the Lora extension's and `modules/progress.py`'s)
is in the doc; every field of the A1111 request models and of the apps' own request bodies and query
parameters is in the doc's field tables, the txt2img/img2img ones in their own sections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from sdxlpool._reference.http_page import apps
from sdxlpool.api import a1111

DOC = Path(__file__).resolve().parents[2] / "docs" / "a1111-compatibility.md"
STATUSES = ("implemented", "different", "absent")
PREFIXES = ("/sdapi/", "/internal/")

# A1111 v1.10: Api.__init__ in modules/api/api.py (server-kill/-restart/-stop only with --api-server-stop),
# extensions-builtin/Lora (loras, refresh-loras) and modules/progress.py (the /internal/ routes).
A1111_ROUTES = {
    ("POST", "/sdapi/v1/txt2img"), ("POST", "/sdapi/v1/img2img"), ("POST", "/sdapi/v1/extra-single-image"),
    ("POST", "/sdapi/v1/extra-batch-images"), ("POST", "/sdapi/v1/png-info"), ("GET", "/sdapi/v1/progress"),
    ("POST", "/sdapi/v1/interrogate"), ("POST", "/sdapi/v1/interrupt"), ("POST", "/sdapi/v1/skip"),
    ("GET", "/sdapi/v1/options"), ("POST", "/sdapi/v1/options"), ("GET", "/sdapi/v1/cmd-flags"),
    ("GET", "/sdapi/v1/samplers"), ("GET", "/sdapi/v1/schedulers"), ("GET", "/sdapi/v1/upscalers"),
    ("GET", "/sdapi/v1/latent-upscale-modes"), ("GET", "/sdapi/v1/sd-models"), ("GET", "/sdapi/v1/sd-vae"),
    ("GET", "/sdapi/v1/hypernetworks"), ("GET", "/sdapi/v1/face-restorers"), ("GET", "/sdapi/v1/realesrgan-models"),
    ("GET", "/sdapi/v1/prompt-styles"), ("GET", "/sdapi/v1/embeddings"), ("POST", "/sdapi/v1/refresh-embeddings"),
    ("POST", "/sdapi/v1/refresh-checkpoints"), ("POST", "/sdapi/v1/refresh-vae"),
    ("POST", "/sdapi/v1/create/embedding"), ("POST", "/sdapi/v1/create/hypernetwork"),
    ("POST", "/sdapi/v1/train/embedding"), ("POST", "/sdapi/v1/train/hypernetwork"), ("GET", "/sdapi/v1/memory"),
    ("POST", "/sdapi/v1/unload-checkpoint"), ("POST", "/sdapi/v1/reload-checkpoint"), ("GET", "/sdapi/v1/scripts"),
    ("GET", "/sdapi/v1/script-info"), ("GET", "/sdapi/v1/extensions"),
    ("POST", "/sdapi/v1/server-kill"), ("POST", "/sdapi/v1/server-restart"), ("POST", "/sdapi/v1/server-stop"),
    ("GET", "/sdapi/v1/loras"), ("POST", "/sdapi/v1/refresh-loras"),
    ("POST", "/internal/progress"), ("GET", "/internal/pending-tasks"),
}
KILL_ROUTES = {("POST", f"/sdapi/v1/server-{what}") for what in ("kill", "restart", "stop")}


def rows(text: str) -> Iterator[list[str]]:
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            yield [cell.strip() for cell in line.strip().strip("|").split("|")]


def status(cell: str) -> str:
    word = re.split(r"[\s:(]", cell, maxsplit=1)[0].lower()
    assert word in STATUSES, f"a status starts with one of {STATUSES}: {cell!r}"
    return word


def route_table(text: str) -> dict[tuple[str, str], dict[str, str]]:
    section = text.split("<!-- routes", 1)[1].split("\n## ", 1)[0]
    table: dict[tuple[str, str], dict[str, str]] = {}
    for method, path, worker, gateway in (r for r in rows(section) if r[0] != "method"):
        key = (method, path.strip("`"))
        assert key not in table, f"{key} is listed twice"
        table[key] = {"worker": status(worker), "gateway": status(gateway)}
    return table


def field_tables(text: str) -> dict[str, set[str]]:
    """Section name (the `<!-- fields: NAME -->` marker) -> the fields its table lists."""
    tables = {}
    for part in text.split("<!-- fields: ")[1:]:
        name, body = part.split(" -->", 1)
        fields = {r[0].strip("`") for r in rows(body.split("\n<!-- ", 1)[0]) if r[0] != "field"}
        for row in rows(body.split("\n<!-- ", 1)[0]):
            if row[0] != "field":
                status(row[1])
                assert row[2].startswith("as the worker") or status(row[2]), row  # the gateway forwards
        tables[name] = fields
    return tables


@pytest.fixture(scope="module")
def doc() -> str:
    return DOC.read_text()


@pytest.fixture(scope="module")
def built() -> dict[str, Any]:
    return apps()


def api_routes(routes: Iterable[Any]) -> Iterator[Any]:
    from fastapi.routing import APIRoute

    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.120 keeps included routers whole
        if inner is not None:
            yield from api_routes(inner.routes)
        elif isinstance(route, APIRoute):
            yield route


def a1111_routes_of(app: Any) -> set[tuple[str, str]]:
    return {(method, route.path) for route in api_routes(app.routes) if route.path.startswith(PREFIXES)
            for method in route.methods or () if method != "HEAD"}


def model_fields(model: type[BaseModel]) -> set[str]:
    """A request model's fields, and those of the models nested in it (an extras `imageList` entry)."""
    names = set(model.model_fields)
    for info in model.model_fields.values():
        for inner in (info.annotation, *get_args(info.annotation)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                names |= model_fields(inner)
    return names


def request_fields_of(app: Any) -> set[str]:
    """The body fields and query parameters of the app's A1111 routes."""
    names: set[str] = set()
    for route in api_routes(app.routes):
        if not route.path.startswith(PREFIXES):
            continue
        names |= {param.name for param in route.dependant.query_params}
        body = route.body_field
        if body is not None and isinstance(body.field_info.annotation, type) \
                and issubclass(body.field_info.annotation, BaseModel):
            names |= model_fields(body.field_info.annotation)
    return names


def test_the_doc_lists_every_a1111_route(doc: str) -> None:
    assert A1111_ROUTES - set(route_table(doc)) == set()


def test_server_kill_and_restart_are_absent_by_design(doc: str, built: dict[str, Any]) -> None:
    table = route_table(doc)
    for key in KILL_ROUTES:
        assert table[key] == {"worker": "absent", "gateway": "absent"}
        assert all(key not in a1111_routes_of(app) for app in built.values())


@pytest.mark.parametrize("name", ["worker", "gateway"])
def test_every_a1111_route_of_the_app_is_in_the_doc(doc: str, built: dict[str, Any], name: str) -> None:
    assert a1111_routes_of(built[name]) - set(route_table(doc)) == set()


@pytest.mark.parametrize("name", ["worker", "gateway"])
def test_what_the_doc_says_of_each_route_is_what_the_app_has(doc: str, built: dict[str, Any], name: str) -> None:
    have = a1111_routes_of(built[name])
    table = route_table(doc)
    missing = sorted(key for key, said in table.items() if said[name] != "absent" and key not in have)
    extra = sorted(key for key, said in table.items() if said[name] == "absent" and key in have)
    assert missing == [], f"the doc says the {name} serves these, it does not"
    assert extra == [], f"the doc says the {name} does not serve these, it does"


def test_every_a1111_request_field_is_in_its_section(doc: str) -> None:
    tables = field_tables(doc)
    shared = tables["txt2img and img2img"]
    assert model_fields(a1111.ProcessingRequest) - shared == set()
    assert model_fields(a1111.Txt2ImgRequest) - shared - tables["txt2img"] == set()
    assert model_fields(a1111.Img2ImgRequest) - shared - tables["img2img"] == set()
    for model in (a1111.ExtrasSingleImageRequest, a1111.ExtrasBatchImagesRequest):
        assert model_fields(model) - tables["extras"] == set()
    assert model_fields(a1111.PngInfoRequest) - tables["png-info"] == set()
    # A field of txt2img only is not in the shared table (the sections say where each applies).
    assert shared & {"enable_hr", "init_images", "mask", "hr_scale"} == set()


@pytest.mark.parametrize("name", ["worker", "gateway"])
def test_every_request_field_of_the_app_is_in_the_doc(doc: str, built: dict[str, Any], name: str) -> None:
    documented = set().union(*field_tables(doc).values())
    assert request_fields_of(built[name]) - documented == set()
