"""docs/reference/http.md: the worker's and the gateway's routes, from their real FastAPI apps.

The apps are built with ``create_app`` and never started, so no model loads and no port opens.
Routes in the OpenAPI document come with their summary and documented status codes; the routes
OpenAPI cannot describe (the WebSocket, the web page and its assets) are listed after them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["render", "apps"]


def apps() -> dict[str, Any]:
    """'worker' and 'gateway' -> their FastAPI apps, built (routes registered) but not started."""
    from sdxlpool.gateway.app import create_app as create_gateway
    from sdxlpool.gateway.settings import GatewaySettings
    from sdxlpool.worker.app import create_app as create_worker
    from sdxlpool.worker.settings import WorkerSettings

    # Settings need a model path and a discovery source; the files are never opened before start-up.
    return {
        "worker": create_worker(WorkerSettings.model_validate({"models": [Path("sd_xl_base_1.0.safetensors")]})),
        "gateway": create_gateway(GatewaySettings.model_validate({"backends_file": Path("backends.yaml")})),
    }


def render(root: Path) -> str:
    parts = []
    for name, app in apps().items():
        spec = app.openapi()
        common = _common_errors(spec)
        parts.append(f"## {name}: {app.title}\n\n{app.description}.\n")
        parts.append(_openapi_table(spec, common))
        parts.append(f"Every route of the {name} may also answer:\n\n" + "".join(
            f"- {status}: {_cell(description)}\n" for status, description in common.items()))
        hidden = list(_undocumented_routes(app.routes))
        if hidden:
            parts.append("Not in the OpenAPI document:\n")
            parts.append("| method | path | what |\n|---|---|---|\n" + "".join(
                f"| {method} | `{path}` | {what} |\n" for method, path, what in hidden))
    return "\n".join(parts)


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


def _common_errors(spec: dict[str, Any]) -> dict[str, str]:
    """Error statuses every operation declares (the app-wide error answers), with their description."""
    declared = [operation.get("responses", {}) for _, _, operation in _operations(spec)]
    shared = set.intersection(*(set(responses) for responses in declared)) if declared else set()
    return {status: declared[0][status].get("description", "") for status in sorted(shared)
            if not status.startswith("2")}


def _openapi_table(spec: dict[str, Any], common: dict[str, str]) -> str:
    rows = ["| method | path | what | body | answers |", "|---|---|---|---|---|"]
    for method, path, operation in _operations(spec):
        own = [status for status in sorted(operation.get("responses", {})) if status not in common]
        rows.append(f"| {method} | `{path}` | {_describe(operation)} | {_body(operation)} | {', '.join(own)} |")
    return "\n".join(rows) + "\n"


def _body(operation: dict[str, Any]) -> str:
    """The request body's schema name, or names when it is one of several (its fields are in
    /openapi.json and /docs)."""
    content = operation.get("requestBody", {}).get("content", {})
    schemas = [media.get("schema", {}) for media in content.values()]
    names = {one["$ref"].rsplit("/", 1)[-1] for schema in schemas for one in [schema, *schema.get("anyOf", [])]
             if "$ref" in one}
    return ", ".join(f"`{name}`" for name in sorted(names)) or ("JSON" if content else "")


def _describe(operation: dict[str, Any]) -> str:
    """The first sentence of the route's docstring, else FastAPI's summary (from the function name)."""
    return _cell(_first_sentence(operation.get("description", "")) or operation.get("summary", ""))


def _first_sentence(text: str) -> str:
    paragraph = " ".join(text.strip().split("\n\n")[0].split())
    return paragraph.split(". ")[0].rstrip(".")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _undocumented_routes(routes: Iterable[Any]) -> Iterator[tuple[str, str, str]]:
    """WebSocket routes and API routes left out of the schema, through included routers."""
    from fastapi.routing import APIRoute, APIWebSocketRoute

    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI >= 0.120 keeps included routers whole
        if inner is not None:
            yield from _undocumented_routes(inner.routes)
        elif isinstance(route, APIWebSocketRoute):
            yield "WebSocket", route.path, _cell(_first_sentence(route.endpoint.__doc__ or "") or route.name)
        elif isinstance(route, APIRoute) and not route.include_in_schema:
            methods = ", ".join(sorted(route.methods or ()))
            yield methods, route.path, _cell(_first_sentence(route.endpoint.__doc__ or "") or route.name)
