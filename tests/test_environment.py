"""One Settings style: the package reads the environment only through pydantic-settings classes.

The few other uses are named here with their reason; a new `os.environ`/`getenv` anywhere else
fails, and so does an entry here that no longer matches (the list cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import sdxlpool

PACKAGE = Path(sdxlpool.__file__).parent
ALLOWED = {
    # A variable whose *name* is given at run time (`sdxlpool sdl --hf-token-env VAR`): no Settings
    # class can declare it, so one helper reads it.
    ("_settings.py", "return os.environ.get(name) or None"),
    # A write, for huggingface_hub (it reads HF_HUB_OFFLINE when imported): a worker never calls a hub.
    ("cli.py", 'os.environ.setdefault("HF_HUB_OFFLINE", "1")'),
    # The supervisor hands its own environment on to the processes it starts.
    ("local/supervisor.py", "env={**os.environ, **proc.env}"),
    # So do the test-support helpers that start sim-workers and gateways (quieter logs).
    ("testing/processes.py", "full_env = {**os.environ,"),
    ("testing/operator.py", "self.env = {**os.environ,"),
    # ... and the mutation runner's pytest in a scratch copy of the tree (PYTHONPATH: the copy).
    ("testing/mutations.py", "env = {**os.environ,"),
    # The reference-docs generator hides the shell's SDXLPOOL_* variables while it renders defaults,
    # so the pages do not depend on who ran it, and puts them back.
    ("_reference/_pages.py", "saved = {key: os.environ.pop(key)"),
    ("_reference/_pages.py", "os.environ.update(saved)"),
}


def _uses() -> set[tuple[str, str]]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if re.search(r"os\.environ|getenv", line):
                found.add((path.relative_to(PACKAGE).as_posix(), line.strip()))
    return found


def test_no_stray_environment_reads() -> None:
    stray = sorted(use for use in _uses()
                   if not any(use[0] == where and what in use[1] for where, what in ALLOWED))
    assert not stray, f"read the environment through a Settings class instead: {stray}"


def test_every_allowed_use_still_exists() -> None:
    uses = _uses()
    gone = sorted(entry for entry in ALLOWED if not any(w == entry[0] and entry[1] in line for w, line in uses))
    assert not gone, f"remove from ALLOWED: {gone}"


@pytest.mark.parametrize(("variable", "value", "field", "expected"), [
    ("SDXLPOOL_GATEWAY_URL", "https://pool.example", "gateway_url", "https://pool.example"),
    ("SDXLPOOL_API_KEY", "sk-test", "api_key", "sk-test"),
])
def test_client_variables(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str,
                          expected: str) -> None:
    from sdxlpool.client._settings import ClientSettings

    assert getattr(ClientSettings(), field) in ("", expected)  # whatever the caller's environment holds
    monkeypatch.setenv(variable, value)
    assert getattr(ClientSettings(), field) == expected


def test_log_level_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from sdxlpool._settings import LogSettings

    monkeypatch.setenv("SDXLPOOL_LOG_LEVEL", "debug")
    assert LogSettings().log_level == "DEBUG"
    monkeypatch.setenv("SDXLPOOL_LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="must be DEBUG, INFO"):
        LogSettings()
