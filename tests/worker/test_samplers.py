"""A1111 sampler names -> diffusers schedulers: the pure mapping, the scheduler each listed pair
builds (against a table written from the documentation, not from the code), then every listed pair
for real, and different samplers drawing different images.

The expectation tables come from diffusers' "A1111/k-diffusion -> Diffusers" table (docs, API,
Schedulers overview, with its "Noise schedules and schedule types" part) and A1111's
modules/sd_samplers_kdiffusion.py, sd_samplers_compvis/timesteps.py and sd_schedulers.py:
- one deliberate choice: "DPM++ SDE" (k-diffusion's sample_dpmpp_sde, a stochastic sampler with
  Brownian noise) -> DPMSolverSDEScheduler, diffusers' port of that very sampler (its table names
  the deterministic DPMSolverSinglestepScheduler as the nearest);
- "Uniform" is k-diffusion's default schedule (timesteps spaced evenly over the whole range:
  diffusers' "linspace"), "SGM Uniform" is diffusers' "trailing", as its table says; "Normal"
  (ComfyUI's, in A1111 1.10 too: SillyTavern's default) spaces timesteps evenly as well;
- "Automatic" leaves the model's own scheduler settings alone.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from sdxlpool.errors import InvalidRequest, NotFound
from sdxlpool.worker.samplers import SAMPLERS, resolve_sampler
from tests.worker.imaging import pixels

# A1111 sampler -> (diffusers class, settings it must be built with).
SAMPLER_TABLE: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}

# A1111 schedule type (its machine name, as /sdapi/v1/samplers lists it) -> the diffusers settings that realise it; every other schedule flag stays off.
SCHEDULE_TABLE: dict[str, dict[str, Any]] = {
    "automatic": {},
    "uniform": {"timestep_spacing": "linspace"},
    "karras": {"use_karras_sigmas": True},
    "exponential": {"use_exponential_sigmas": True},
    "sgm_uniform": {"timestep_spacing": "trailing"},
    "beta": {"use_beta_sigmas": True},
    "normal": {"timestep_spacing": "linspace"},  # ComfyUI's "normal": evenly spaced timesteps, as uniform
}
SIGMA_FLAGS = ("use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas")

# SDXL base 1.0's own scheduler config (scheduler/scheduler_config.json), as a worker loads it.
SDXL_SCHEDULER_CONFIG: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
    "beta_start": 0.00085, "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "timestep_spacing": "leading", "trained_betas": None, "use_karras_sigmas": False,
}
MODEL_SETTINGS = ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type")

# A1111's pre-1.9 combined names (sd_samplers_kdiffusion.py) that clients still send: each must be offered.
LEGACY_NAMES = {
    "DPM++ 2M Karras": ("DPM++ 2M", "karras"),
    "DPM++ SDE Karras": ("DPM++ SDE", "karras"),
    "DPM++ 2M SDE Karras": ("DPM++ 2M SDE", "karras"),
    "DPM++ 2M SDE Exponential": ("DPM++ 2M SDE", "exponential"),
    "LMS Karras": ("LMS", "karras"),
    "DPM2 Karras": ("DPM2", "karras"),
    "DPM2 a Karras": ("DPM2 a", "karras"),
}


@pytest.mark.parametrize(
    ("sampler_name", "scheduler", "sampler", "schedule"),
    [
        ("DPM++ 2M Karras", None, "DPM++ 2M", "karras"),  # legacy combined
        ("DPM++ 2M", "Karras", "DPM++ 2M", "karras"),  # v1.9 split, by label
        ("DPM++ 2M", "karras", "DPM++ 2M", "karras"),  # ... and by name
        ("DPM++ SDE Karras", None, "DPM++ SDE", "karras"),
        ("DPM++ 2M SDE Exponential", None, "DPM++ 2M SDE", "exponential"),
        ("Euler a", None, "Euler a", "automatic"),
        ("k_euler_a", None, "Euler a", "automatic"),  # A1111 alias
        ("euler", "Automatic", "Euler", "automatic"),  # case-insensitive
        ("LMS Karras", None, "LMS", "karras"),
        ("DPM2 a Karras", None, "DPM2 a", "karras"),
        ("UniPC", "SGM Uniform", "UniPC", "sgm_uniform"),
        ("DDIM", "Uniform", "DDIM", "uniform"),
        ("Euler", "Beta", "Euler", "beta"),
        # An explicit schedule wins over a legacy suffix only when the suffix is not part of a name:
        ("DPM++ 2M Karras", "Karras", None, None),
    ],
)
def test_resolution(sampler_name: str, scheduler: str | None, sampler: str | None, schedule: str | None) -> None:
    if sampler is None:
        with pytest.raises(NotFound):
            resolve_sampler(sampler_name, scheduler)
        return
    choice = resolve_sampler(sampler_name, scheduler)
    assert (choice.sampler.name, choice.schedule.name) == (sampler, schedule)


def test_legacy_name_round_trips() -> None:
    for sampler in SAMPLERS:
        for schedule in sampler.schedules:
            choice = resolve_sampler(sampler.name, schedule.name)
            assert resolve_sampler(choice.legacy_name) == choice


@pytest.mark.parametrize(("name", "scheduler", "error"), [
    ("Nonexistent", None, NotFound),
    ("Euler", "Bogus", NotFound),
    ("Euler a", "Karras", InvalidRequest),
    ("DDIM", "Exponential", InvalidRequest),
])
def test_errors(name: str, scheduler: str | None, error: type) -> None:
    with pytest.raises(error):
        resolve_sampler(name, scheduler)


def test_every_listed_sampler_and_schedule_generates(client: httpx.Client) -> None:
    """`/sdapi/v1/samplers` lists exactly what works: run each pair it lists."""
    listed = client.get("/sdapi/v1/samplers").json()
    ran = 0
    for entry in listed:
        for schedule in entry["options"]["schedulers"]:
            body = {"prompt": "a fox", "seed": 3, "steps": 3, "width": 64, "height": 64,
                    "sampler_name": entry["name"], "scheduler": schedule}
            response = client.post("/sdapi/v1/txt2img", json=body)
            assert response.status_code == 200, (entry["name"], schedule, response.text)
            info = json.loads(response.json()["info"])
            assert info["sampler_name"] == entry["name"]
            assert f"Sampler: {entry['name']}," in info["infotexts"][0]
            ran += 1
    assert ran >= 40


def assert_builds_as_documented(scheduler: Any, sampler: str, schedule: str) -> None:
    """`scheduler` is what SAMPLER_TABLE x SCHEDULE_TABLE say (sampler, schedule) maps to."""
    cls, sampler_settings = SAMPLER_TABLE[sampler]
    where = f"{sampler} / {schedule}"
    assert type(scheduler).__name__ == cls, where
    config = scheduler.config
    for key, value in {**sampler_settings, **SCHEDULE_TABLE[schedule]}.items():
        assert config.get(key) == value, (where, key, config.get(key))
    for flag in SIGMA_FLAGS:  # only the schedule asked for
        if flag not in SCHEDULE_TABLE[schedule] and flag in config:
            assert not config[flag], (where, flag)
    if "timestep_spacing" not in SCHEDULE_TABLE[schedule] and "timestep_spacing" in config:
        assert config["timestep_spacing"] == SDXL_SCHEDULER_CONFIG["timestep_spacing"], where
    for key in MODEL_SETTINGS:  # the training schedule always comes from the model
        assert config[key] == SDXL_SCHEDULER_CONFIG[key], (where, key)


def test_each_listed_pair_builds_the_documented_scheduler(client: httpx.Client) -> None:
    listed = client.get("/sdapi/v1/samplers").json()
    assert {entry["name"] for entry in listed} == set(SAMPLER_TABLE)
    built = 0
    for entry in listed:
        assert set(entry["options"]["schedulers"]) <= set(SCHEDULE_TABLE), entry
        assert "automatic" in entry["options"]["schedulers"], entry
        for schedule in entry["options"]["schedulers"]:
            scheduler = resolve_sampler(entry["name"], schedule).build(SDXL_SCHEDULER_CONFIG)
            assert_builds_as_documented(scheduler, entry["name"], schedule)
            built += 1
    assert built >= 40


@pytest.mark.parametrize("legacy", sorted(LEGACY_NAMES))
def test_legacy_names_build_the_documented_scheduler(client: httpx.Client, legacy: str) -> None:
    sampler, schedule = LEGACY_NAMES[legacy]
    offered = {entry["name"]: entry["options"]["schedulers"] for entry in client.get("/sdapi/v1/samplers").json()}
    assert schedule in offered[sampler], (legacy, offered[sampler])
    assert_builds_as_documented(resolve_sampler(legacy).build(SDXL_SCHEDULER_CONFIG), sampler, schedule)


def test_brownian_sampler_seeds_its_noise_per_image() -> None:
    """DPM++ SDE draws Brownian noise: one tree per image seed (A1111), so an image repeats with its seed."""
    scheduler = resolve_sampler("DPM++ SDE Karras").build(SDXL_SCHEDULER_CONFIG, image_seeds=[5, 6])
    assert scheduler.config["noise_sampler_seed"] == [5, 6]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and bool((a.eq(b) | (a.isnan() & b.isnan())).all()))  # DPM2's tables start with a NaN
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):  # a config (FrozenDict, an OrderedDict): the same settings, in any order
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def assert_same_state(got: Any, want: Any, where: str) -> None:
    """Every attribute of scheduler `got` equals `want`'s (its config included)."""
    assert type(got) is type(want), where
    assert vars(got).keys() == vars(want).keys(), where
    for name, value in vars(want).items():
        assert _same(getattr(got, name), value), (where, name)


def test_every_build_is_a_fresh_scheduler_of_its_own() -> None:
    """`build` keeps one scheduler per sampler, schedule and config and hands out copies: each copy is
    what a fresh build is (per-image Brownian seeds included; the other samplers ignore them), and
    running one leaves the next alone."""
    seeds = [5, 6]
    for sampler in SAMPLERS:
        for schedule in sampler.schedules:
            where = f"{sampler.name} / {schedule.name}"
            choice = resolve_sampler(sampler.name, schedule.name)
            seeded = {"noise_sampler_seed": seeds} if sampler.brownian else {}
            fresh = sampler.diffusers_class.from_config(SDXL_SCHEDULER_CONFIG, **sampler.kwargs, **schedule.kwargs,
                                                        **seeded)
            first = choice.build(SDXL_SCHEDULER_CONFIG, image_seeds=seeds)
            assert_same_state(first, fresh, where)
            first.set_timesteps(4)
            second = choice.build(SDXL_SCHEDULER_CONFIG, image_seeds=seeds)
            assert second is not first, where
            assert_same_state(second, fresh, where)
            second.set_timesteps(4)
            fresh.set_timesteps(4)
            assert_same_state(second, fresh, where)


def _image(client: httpx.Client, sampler: str, scheduler: str = "automatic", seed: int = 11) -> np.ndarray:
    body = {"prompt": "a fox in the snow", "seed": seed, "steps": 4, "width": 64, "height": 64,
            "sampler_name": sampler, "scheduler": scheduler}
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code == 200, response.text
    return pixels(response.json()["images"][0])


def test_samplers_and_schedules_change_the_image(client: httpx.Client) -> None:
    """Same seed, same everything else: another sampler (or schedule) is another image; the same one repeats."""
    euler = _image(client, "Euler")
    assert np.array_equal(euler, _image(client, "Euler")), "same sampler, same seed: not the same image"
    for other, scheduler in [("Euler a", "automatic"), ("DPM++ 2M", "automatic"), ("DDIM", "automatic"),
                             ("Euler", "karras")]:
        image = _image(client, other, scheduler)
        difference = np.abs(image - euler).max()
        assert difference > 0, f"{other} / {scheduler} drew the same pixels as Euler at the same seed"
