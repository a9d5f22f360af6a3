"""The figures load runs report: latency percentiles, open-loop arrivals and growth per 1000 requests."""

from __future__ import annotations

import random
from collections.abc import Iterable

__all__ = ["percentile", "spread", "poisson_arrivals", "slope_per_1000"]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The `q`th percentile (0-100) of `values`, interpolated between the closest ranks as numpy's default
    does, rounded to 4 decimals; None when there are no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return round(ordered[low] + (ordered[high] - ordered[low]) * (pos - low), 4)


def spread(values: Iterable[float]) -> dict[str, float | int | None]:
    """How a benchmark's repeated measurements spread: median, p10, p90, min, max and their count."""
    ordered = sorted(values)
    return {"median": percentile(ordered, 50), "p10": percentile(ordered, 10), "p90": percentile(ordered, 90),
            "min": round(ordered[0], 4) if ordered else None, "max": round(ordered[-1], 4) if ordered else None,
            "n": len(ordered)}


def poisson_arrivals(rng: random.Random, rate: float, count: int, seconds: float) -> list[float]:
    """Open-loop Poisson arrival offsets (seconds), at most `count`, all before `seconds`."""
    arrivals: list[float] = []
    t = 0.0
    while len(arrivals) < count:
        t += rng.expovariate(rate)
        if t >= seconds:
            break
        arrivals.append(t)
    return arrivals


def slope_per_1000(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs, scaled to per 1000 of x (0 with fewer than 2 points)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return 1000 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
