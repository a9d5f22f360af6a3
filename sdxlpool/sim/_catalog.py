"""The sampler catalogue as the real worker derives it from diffusers, written down as a table.

The real worker asks each diffusers scheduler class which schedule types it implements, and builds
a scheduler to count a request's denoising iterations. The simulator must not import diffusers (or
torch), so it uses this table instead: the same sampler names, the same schedule types per sampler
in `/sdapi/v1/samplers`, the same accepted and rejected (sampler, scheduler) pairs, and the same
iteration counts (second-order samplers take 2 x steps - 1 iterations; PLMS one warm-up iteration
more). `tests/sim/test_catalog.py` checks the table against the installed diffusers.

A sampler missing from the table (one added to `SAMPLERS` later) is offered with every schedule and
one iteration per step until the table learns it; that test fails meanwhile.
"""

from __future__ import annotations

from sdxlpool.worker.samplers import SCHEDULES, Sampler, Schedule

__all__ = ["sim_schedules", "sim_iterations"]

_ALL = tuple(s.name for s in SCHEDULES)
_SIGMA_FREE = ("automatic", "uniform", "sgm_uniform", "normal")  # classes without Karras/exponential/beta sigmas

# sampler -> schedule names it supports (diffusers 0.3x: the class's __init__ parameters)
_SCHEDULE_NAMES: dict[str, tuple[str, ...]] = {
    "DPM++ 2M": _ALL,
    "DPM++ SDE": _ALL,
    "DPM++ 2M SDE": _ALL,
    "Euler a": _SIGMA_FREE,
    "Euler": _ALL,
    "LMS": _ALL,
    "Heun": _ALL,
    "DPM2": _ALL,
    "DPM2 a": _ALL,
    "DDIM": _SIGMA_FREE,
    "PLMS": _SIGMA_FREE,
    "UniPC": _ALL,
}
_SECOND_ORDER = frozenset({"DPM++ SDE", "Heun", "DPM2", "DPM2 a"})  # two model calls per step but the last


def sim_schedules(sampler: Sampler) -> tuple[Schedule, ...]:
    names = _SCHEDULE_NAMES.get(sampler.name, _ALL)
    return tuple(s for s in SCHEDULES if s.name in names)


def sim_iterations(sampler: Sampler, steps: int) -> int:
    """Denoising iterations of one batch, as `len(scheduler.timesteps)` after `set_timesteps(steps)`."""
    if sampler.name in _SECOND_ORDER:
        return 2 * steps - 1
    if sampler.name == "PLMS" and steps > 1:
        return steps + 1  # PNDM without PRK steps repeats its first timestep
    return steps
