"""AUTOMATIC1111 sampler and schedule names -> diffusers schedulers.

A1111 clients name a sampler ("DPM++ 2M") and, since v1.9, a separate schedule type ("Karras");
older clients send both in one legacy name ("DPM++ 2M Karras"). Both forms resolve here to a
`SamplerChoice`, and `SamplerChoice.build(config)` makes the diffusers scheduler from the model's
own scheduler config (so betas, prediction type and training schedule always come from the model).

The mapping follows diffusers' table of A1111 equivalents. A sampler is offered with a schedule only
where the diffusers class really implements it (checked against the class signature), so
`/sdapi/v1/samplers` lists exactly what works.
"""

from __future__ import annotations

import copy
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from sdxlpool.errors import InvalidRequest, NotFound

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

__all__ = ["SAMPLERS", "SCHEDULES", "Sampler", "Schedule", "SamplerChoice", "resolve_sampler"]


@dataclass(frozen=True)
class Schedule:
    """An A1111 schedule type and the diffusers scheduler kwargs that realise it."""

    name: str  # A1111's machine name, e.g. "karras"
    label: str  # A1111's display label, e.g. "Karras"; also the legacy-name suffix
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def required_parameter(self) -> str | None:
        return next(iter(self.kwargs), None)


SCHEDULES: tuple[Schedule, ...] = (
    Schedule("automatic", "Automatic"),  # the model's own scheduler config
    Schedule("uniform", "Uniform", {"timestep_spacing": "linspace"}),
    Schedule("karras", "Karras", {"use_karras_sigmas": True}),
    Schedule("exponential", "Exponential", {"use_exponential_sigmas": True}),
    Schedule("sgm_uniform", "SGM Uniform", {"timestep_spacing": "trailing"}),
    Schedule("beta", "Beta", {"use_beta_sigmas": True}),
    # A1111's "Normal" (from ComfyUI/Forge) spaces timesteps evenly from sigma_max's to sigma_min's:
    # what diffusers' linspace spacing does too (SillyTavern's default schedule).
    Schedule("normal", "Normal", {"timestep_spacing": "linspace"}),
)


@dataclass(frozen=True)
class Sampler:
    name: str
    aliases: tuple[str, ...]
    scheduler_class: str  # a class name in `diffusers`
    kwargs: dict[str, Any] = field(default_factory=dict)
    ancestral: bool = False  # draws fresh noise every step (A1111's "uses_ensd")
    brownian: bool = False  # noise from a seeded Brownian tree (DPM++ SDE)

    @cached_property
    def diffusers_class(self) -> type[SchedulerMixin]:
        import diffusers

        return getattr(diffusers, self.scheduler_class)

    @cached_property
    def schedules(self) -> tuple[Schedule, ...]:
        """The schedule types this sampler supports, in A1111's order."""
        accepted = inspect.signature(self.diffusers_class.__init__).parameters
        return tuple(s for s in SCHEDULES if s.required_parameter is None or s.required_parameter in accepted)


SAMPLERS: tuple[Sampler, ...] = (
    Sampler("DPM++ 2M", ("k_dpmpp_2m",), "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    Sampler("DPM++ SDE", ("k_dpmpp_sde",), "DPMSolverSDEScheduler", brownian=True),
    Sampler("DPM++ 2M SDE", ("k_dpmpp_2m_sde",), "DPMSolverMultistepScheduler",
            {"algorithm_type": "sde-dpmsolver++"}, ancestral=True),
    Sampler("Euler a", ("k_euler_a",), "EulerAncestralDiscreteScheduler", ancestral=True),
    Sampler("Euler", ("k_euler",), "EulerDiscreteScheduler"),
    Sampler("LMS", ("k_lms",), "LMSDiscreteScheduler"),
    Sampler("Heun", ("k_heun",), "HeunDiscreteScheduler"),
    Sampler("DPM2", ("k_dpm_2",), "KDPM2DiscreteScheduler"),
    Sampler("DPM2 a", ("k_dpm_2_a",), "KDPM2AncestralDiscreteScheduler", ancestral=True),
    Sampler("DDIM", ("ddim",), "DDIMScheduler"),
    Sampler("PLMS", ("plms",), "PNDMScheduler", {"skip_prk_steps": True}),
    Sampler("UniPC", ("unipc",), "UniPCMultistepScheduler"),
)

_SAMPLER_BY_NAME = {n.lower(): s for s in SAMPLERS for n in (s.name, *s.aliases)}
_SCHEDULE_BY_NAME = {n.lower(): s for s in SCHEDULES for n in (s.name, s.label)}


@dataclass(frozen=True)
class SamplerChoice:
    sampler: Sampler
    schedule: Schedule

    def build(self, model_scheduler_config: Any, *, image_seeds: list[int] | None = None) -> Any:
        """A fresh diffusers scheduler for one batch (schedulers keep per-run state: never share one).

        Brownian samplers get one noise tree per image seed, as A1111 does, so an image depends on
        its own seed only, not on what else is in the batch (unseeded, they would not repeat at all).
        """
        kwargs = {**self.sampler.kwargs, **self.schedule.kwargs}
        seeds = list(image_seeds) if self.sampler.brownian and image_seeds else None
        key = _config_key(model_scheduler_config)
        if key is None:
            seeded = {"noise_sampler_seed": seeds} if seeds is not None else {}
            return self.sampler.diffusers_class.from_config(model_scheduler_config, **kwargs, **seeded)
        key = f"{self.sampler.name}/{self.schedule.name}/{key}"
        built = _BUILT.get(key)
        if built is None:
            built = self.sampler.diffusers_class.from_config(model_scheduler_config, **kwargs)
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.clear()
            _BUILT[key] = built
        scheduler = copy.deepcopy(built)  # the kept one is never handed out: its copy is as fresh as a new one
        if seeds is not None:
            # The one setting that changes per job, put where DPMSolverSDEScheduler.__init__ puts it: its
            # config and its attribute, no longer listed among the defaults it used (test_samplers checks
            # every copy against a fresh build).
            defaults = scheduler.config.get("_use_default_values")
            unset = {"_use_default_values": [k for k in defaults if k != "noise_sampler_seed"]} if defaults else {}
            scheduler.register_to_config(noise_sampler_seed=seeds, **unset)
            scheduler.noise_sampler_seed = seeds
        return scheduler

    @property
    def legacy_name(self) -> str:
        """The pre-1.9 combined name A1111 writes in infotexts, e.g. "DPM++ 2M Karras"."""
        if self.schedule.name == "automatic":
            return self.sampler.name
        return f"{self.sampler.name} {self.schedule.label}"


# Schedulers as `build` makes them, by sampler, schedule and model config, never used themselves: a job
# gets a deep copy. Some classes compute a table over all training timesteps in __init__ (on a CPU: DPM2
# and DPM2 a a third of a second, DPM++ SDE, the pool's default, 60 ms, LMS and Heun 30 ms; and a job
# builds its scheduler up to three times); a copy takes under a millisecond.
_BUILT: dict[str, Any] = {}
_BUILT_MAX = 256


def _config_key(config: Any) -> str | None:
    """`config` as a key (JSON, sorted), None when it holds a value JSON cannot write exactly (an array)."""
    def refuse(value: object) -> object:
        raise TypeError(type(value).__name__)

    try:
        return json.dumps(dict(config), sort_keys=True, default=refuse)
    except (TypeError, ValueError):
        return None


def resolve_sampler(
    sampler_name: str, scheduler: str | None = None,
    *, schedules_of: Callable[[Sampler], tuple[Schedule, ...]] | None = None,
) -> SamplerChoice:
    """Resolve A1111's (sampler_name, scheduler) pair, legacy combined names included.

    Like A1111 1.9+: a legacy suffix ("... Karras") only applies when no explicit schedule was sent
    (or "Automatic"). Unknown names raise NotFound (A1111 answers 404 "Sampler not found");
    a schedule the sampler cannot do raises InvalidRequest naming `scheduler`. `schedules_of` says
    which schedules a sampler supports (default: `Sampler.schedules`, from the diffusers class; the
    simulator passes a table so that it never imports diffusers).
    """
    schedule = _SCHEDULE_BY_NAME.get((scheduler or "automatic").strip().lower())
    if schedule is None:
        known = ", ".join(s.label for s in SCHEDULES)
        raise NotFound(f"Scheduler not found: {scheduler!r} (available: {known})")
    name = sampler_name.strip()
    sampler = _SAMPLER_BY_NAME.get(name.lower())
    if sampler is None and schedule.name == "automatic":
        for candidate in sorted(SCHEDULES[1:], key=lambda s: -len(s.label)):  # "SGM Uniform" before "Uniform"
            suffix = " " + candidate.label.lower()
            if name.lower().endswith(suffix):
                sampler = _SAMPLER_BY_NAME.get(name[: -len(suffix)].strip().lower())
                schedule = candidate
                break
    if sampler is None:
        raise NotFound(f"Sampler not found: {sampler_name!r} (see /sdapi/v1/samplers)")
    supported = sampler.schedules if schedules_of is None else schedules_of(sampler)
    if schedule not in supported:
        offered = ", ".join(s.label for s in supported)
        raise InvalidRequest(
            "scheduler", f"{schedule.label!r} is not available with sampler {sampler.name!r} (available: {offered})"
        )
    return SamplerChoice(sampler, schedule)
