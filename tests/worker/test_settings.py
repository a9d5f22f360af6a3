"""Worker settings: environment variables, flags over environment, limits that reach requests."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sdxlpool.api.a1111 import Txt2ImgRequest
from sdxlpool.api.generation import resolve_request
from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.settings import WorkerSettings


def test_environment_variables_configure_limits_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXLPOOL_MODELS", '["/models/base.safetensors"]')
    monkeypatch.setenv("SDXLPOOL_MAX_STEPS", "12")
    monkeypatch.setenv("SDXLPOOL_MAX_PROMPT_CHARS", "40")
    monkeypatch.setenv("SDXLPOOL_DEFAULT_STEPS", "10")
    settings = WorkerSettings()
    assert settings.models == [Path("/models/base.safetensors")]
    assert settings.limits.max_steps == 12 and settings.defaults.steps == 10
    with pytest.raises(InvalidRequest, match="steps: must be between 1 and 12"):
        resolve_request(Txt2ImgRequest(steps=13), settings.defaults, settings.limits)
    with pytest.raises(InvalidRequest, match="prompt: is 41 characters; the limit is 40"):
        resolve_request(Txt2ImgRequest(prompt="x" * 41), settings.defaults, settings.limits)


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXLPOOL_MAX_STEPS", "12")
    assert WorkerSettings(models=[Path("m")], max_steps=30).max_steps == 30


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"default_steps": 200}, "default_steps"),  # over max_steps
        ({"default_width": 4096, "default_height": 4096}, "max_pixels"),
        ({"device": "tpu"}, "device"),
        ({"max_queue": -1}, "max_queue"),
        ({"port": 70000}, "port"),
    ],
)
def test_inconsistent_settings_are_refused(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        WorkerSettings(models=[Path("m")], **overrides)
