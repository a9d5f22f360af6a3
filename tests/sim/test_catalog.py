"""The simulator's sampler table against what the real worker derives from the installed diffusers.

If diffusers adds a schedule to a class, or a sampler joins `SAMPLERS`, this fails until
`sdxlpool/sim/_catalog.py` is updated, so a sim-worker always offers what a real worker offers.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sdxlpool.sim._catalog import sim_iterations, sim_schedules
from sdxlpool.worker.architectures import _SCHEDULER  # the SDXL scheduler config real and tiny models ship
from sdxlpool.worker.engine import DiffusersEngine
from sdxlpool.worker.samplers import SAMPLERS, SamplerChoice


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: s.name)
def test_schedules_and_iterations_match_diffusers(sampler) -> None:
    assert sim_schedules(sampler) == sampler.schedules
    base = SimpleNamespace(pipeline=SimpleNamespace(scheduler=SimpleNamespace(config=_SCHEDULER)))
    engine = DiffusersEngine(settings=None)  # type: ignore[arg-type] - iterations() needs no settings
    for schedule in sampler.schedules:  # building a scheduler takes up to 0.1 s: few step counts per schedule
        for steps in (1, 2, 3, 25) if schedule.name == "automatic" else (25,):
            choice = SamplerChoice(sampler, schedule)
            assert sim_iterations(sampler, steps) == engine.iterations(base, choice, steps), (schedule.name, steps)
