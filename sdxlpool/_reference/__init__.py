"""The reference pages under ``docs/reference/``, generated from the code itself.

    python -m sdxlpool._reference            # rewrite the pages (also: make docs)
    python -m sdxlpool._reference --check    # exit 1, with a diff, when a page is stale

Each page has hand-written prose and one generated part between two HTML comments
(``BEGIN``/``END`` markers, see `_pages.py`); only that part is rewritten. Sources:

- ``cli.md``: the real argparse parser of ``sdxlpool/cli.py``, every command's full ``--help``;
- ``http.md``: the worker's and the gateway's FastAPI apps (built, never started: no model loads),
  their OpenAPI document plus the routes it leaves out (WebSocket, the web page);
- ``metrics.md``: the Prometheus registries of a running sim-worker (the worker's own
  ``WorkerService``) and a running gateway, both in-process, no GPU, no network;
- ``crd.md``: ``crds/sdxlpools.sdxlpool.dev.yaml``, itself generated from ``sdxlpool/api/spec.py``
  (``python -m sdxlpool.operator.crd``).

``tests/test_reference_docs.py`` fails when a page differs from what this produces now, so a new
flag, route, metric or CRD field lands together with its reference page.

The module sits above every layer (it reads the CLI, the worker, the gateway and the sim): nothing
in the package imports it.
"""

from __future__ import annotations

from sdxlpool._reference._pages import PAGES, REGENERATE, Page, stale_pages, write_pages

__all__ = ["PAGES", "REGENERATE", "Page", "stale_pages", "write_pages"]
