"""The routing core is pure: importing it loads no event loop, HTTP client, web framework or exporter."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("asyncio", "httpx", "fastapi", "starlette", "uvicorn", "prometheus_client", "torch", "diffusers",
             "kopf", "kubernetes")


def test_routing_imports_nothing_with_io() -> None:
    code = ("import json, sys; import sdxlpool.gateway.routing, sdxlpool.gateway.routing.testing; "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                           text=True).stdout))
    offenders = {name for name in loaded if name.split(".")[0] in FORBIDDEN}
    assert not offenders, sorted(offenders)
    ours = {name for name in loaded if name.startswith("sdxlpool.gateway.")}
    allowed = ("sdxlpool.gateway.routing", "sdxlpool.gateway.backends", "sdxlpool.gateway.worker_metrics")
    assert all(name.startswith(allowed) for name in ours), sorted(ours)
