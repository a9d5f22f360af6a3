"""A1111 sampler names -> diffusers schedulers: the pure mapping, then every listed pair for real."""

from __future__ import annotations

import json

import httpx
import pytest

from sdxlpool.errors import InvalidRequest, NotFound
from sdxlpool.worker.samplers import SAMPLERS, resolve_sampler


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
