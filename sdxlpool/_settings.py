"""What the worker's and the gateway's settings share: input limits and request defaults.

Both check a txt2img request before any work (`sdxlpool.api.generation.resolve_request`), so both
take the same fields (a pool's `spec.limits` and `spec.defaults`, whole), refuse the same
inconsistent combinations, and hand out the same `RequestLimits`/`GenerationDefaults`. Each
subclass sets its own environment prefix (`SDXLPOOL_` for the worker, `SDXLPOOL_GATEWAY_` for the
gateway): `max_steps` is `SDXLPOOL_MAX_STEPS` on a worker, `SDXLPOOL_GATEWAY_MAX_STEPS` on a gateway.
"""

from __future__ import annotations

import logging
import os

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sdxlpool.api.generation import GenerationDefaults, RequestLimits
from sdxlpool.errors import ConfigError

__all__ = ["GenerationSettings", "LogSettings", "defaults_over_limits", "settings_error", "variable_named"]

_LIMITS, _DEFAULTS = RequestLimits(), GenerationDefaults()


def defaults_over_limits(defaults: GenerationDefaults, limits: RequestLimits) -> str | None:
    """Pure: why a request that leaves everything out would be refused, naming the settings; None if it would not."""
    if defaults.steps > limits.max_steps:
        return f"default_steps {defaults.steps} is over max_steps {limits.max_steps}"
    if defaults.width * defaults.height > limits.max_pixels:
        return (f"default_width x default_height ({defaults.width}x{defaults.height} = "
                f"{defaults.width * defaults.height}) is over max_pixels {limits.max_pixels}")
    return None


class GenerationSettings(BaseSettings):
    """Limits and defaults, validated together. Subclasses add their own fields and env prefix."""

    max_steps: int = Field(_LIMITS.max_steps, ge=1, description="largest steps value accepted")
    max_pixels: int = Field(_LIMITS.max_pixels, ge=64 * 64, description="largest width x height accepted")
    max_batch: int = Field(_LIMITS.max_batch, ge=1, description="most images per request (batch_size x n_iter)")
    max_prompt_chars: int = Field(_LIMITS.max_prompt_chars, ge=1, description="longest prompt accepted")

    default_sampler: str = Field(_DEFAULTS.sampler, min_length=1, description="sampler when a request names none")
    default_steps: int = Field(_DEFAULTS.steps, ge=1, description="steps when a request gives none")
    default_cfg_scale: float = Field(_DEFAULTS.cfg_scale, description="cfg_scale when a request gives none")
    default_width: int = Field(_DEFAULTS.width, ge=64, description="width when a request gives none")
    default_height: int = Field(_DEFAULTS.height, ge=64, description="height when a request gives none")
    default_refiner_switch_at: float = Field(_DEFAULTS.refiner_switch_at, ge=0, le=1,
                                             description="refiner_switch_at when a request gives none")

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> GenerationSettings:
        # A request that leaves a field out must not be refused for what it left out.
        problem = defaults_over_limits(self.defaults, self.limits)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(self.max_steps, self.max_pixels, self.max_batch, self.max_prompt_chars)

    @property
    def defaults(self) -> GenerationDefaults:
        return GenerationDefaults(
            sampler=self.default_sampler,
            steps=self.default_steps,
            cfg_scale=self.default_cfg_scale,
            width=self.default_width,
            height=self.default_height,
            refiner_switch_at=self.default_refiner_switch_at,
        )


class LogSettings(BaseSettings):
    """$SDXLPOOL_LOG_LEVEL: how much every command logs (DEBUG, INFO, WARNING, ERROR)."""

    model_config = SettingsConfigDict(env_prefix="SDXLPOOL_")

    log_level: str = Field("INFO", description="how much every command logs: DEBUG, INFO, WARNING, ERROR")

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.strip().upper()
        if not isinstance(logging.getLevelName(level), int):
            raise ValueError(f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {value!r}")
        return level


def variable_named(name: str) -> str | None:
    """The value of an environment variable whose *name* the user gives at run time (e.g.
    `sdxlpool sdl --hf-token-env VAR`), None when unset or empty. The one read of the environment
    outside a Settings class: a class declares its fields up front and cannot know this name,
    and the point of such a flag is that the secret never appears on a command line."""
    return os.environ.get(name) or None


def settings_error(exc: Exception, flags: dict[str, str] | None = None) -> ConfigError:
    """One line naming the flag (or, for a rule across settings, the settings) for a settings error.
    `flags` maps a field to its flag when that is not --field-name, or to its $VARIABLE when it has
    no flag."""
    if not isinstance(exc, ValidationError):  # pydantic_settings.SettingsError: a variable that does not parse
        return ConfigError(f"environment: {exc}")
    err = exc.errors()[0]
    message = err["msg"].removeprefix("Value error, ")
    if not err["loc"]:  # a rule across settings: its message names them
        return ConfigError(message)
    where = str(err["loc"][0])
    return ConfigError(f"{(flags or {}).get(where, '--' + where.replace('_', '-'))}: {message}")
