"""A cache folder holding the tiny model as `sdxlpool up` writes it, shared by the tests here."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def up_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$SDXLPOOL_CACHE for `up`: its tiny model written once, by `up`'s own code."""
    from sdxlpool.local.model import tiny_model

    cache = tmp_path_factory.mktemp("up-cache")
    tiny_model(cache)
    return cache
