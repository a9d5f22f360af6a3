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


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("SDXLPOOL_MAX_PIXELS", "2097152", lambda s: s.limits.max_pixels == 2097152),
        ("SDXLPOOL_MAX_BATCH", "2", lambda s: s.limits.max_batch == 2),
        ("SDXLPOOL_DEFAULT_SAMPLER", "Euler a", lambda s: s.defaults.sampler == "Euler a"),
        ("SDXLPOOL_DEFAULT_CFG_SCALE", "5.5", lambda s: s.defaults.cfg_scale == 5.5),
        ("SDXLPOOL_DEFAULT_WIDTH", "512", lambda s: s.defaults.width == 512),
        ("SDXLPOOL_DEFAULT_HEIGHT", "768", lambda s: s.defaults.height == 768),
        ("SDXLPOOL_DEFAULT_REFINER_SWITCH_AT", "0.6", lambda s: s.defaults.refiner_switch_at == 0.6),
        ("SDXLPOOL_MAX_QUEUE", "3", lambda s: s.max_queue == 3),
    ],
)
def test_every_documented_variable_is_read(monkeypatch: pytest.MonkeyPatch, variable: str, value: str,
                                           read: object) -> None:
    """The names the operator, `up` and the SDL export render for a worker (SDXLPOOL_*) still work."""
    monkeypatch.setenv(variable, value)
    assert read(WorkerSettings(models=[Path("m")]))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_steps": 20}, "default_steps 25 is over max_steps 20"),
        ({"max_pixels": 512 * 512}, "default_width x default_height (1024x1024 = 1048576) is over max_pixels 262144"),
        ({"default_height": 2048, "max_pixels": 1024 * 1024}, "default_width x default_height"),
    ],
)
def test_defaults_over_limits_are_refused_naming_the_fields(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WorkerSettings(models=[Path("m")], **overrides)
    assert message in str(caught.value)


def test_cache_dir_follows_its_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sdxlpool.worker.settings import default_cache_dir

    monkeypatch.setenv("SDXLPOOL_CACHE", str(tmp_path / "cache"))
    assert default_cache_dir() == tmp_path / "cache"
    monkeypatch.delenv("SDXLPOOL_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "sdxlpool"
