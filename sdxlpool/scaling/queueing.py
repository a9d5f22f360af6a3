"""How many workers keep the p95 under a target: the M/M/c (Erlang C) queue.

Each worker runs one job at a time, so a GPU model with `c` ready workers is `c` servers fed by one
queue (the gateway routes each request to the soonest finish, which is what a shared queue does).
With arrival rate `lam` (requests/s) and mean service time `T` (s), the offered load is `a = lam T`;
Erlang C gives the chance a request waits, and the wait's tail is exponential:

    P(wait > t) = C(c, a) * exp(-(c - a) t / T)

so the p95 of a request's seconds is about `T + max(0, T / (c - a) * ln(C / 0.05))`. Image jobs
of one pool are much more regular than exponential, which makes this estimate cautious (an M/D/c
queue waits about half as long): the safe side for a latency target, and the default.

When the spread of request sizes is known, `variability` applies the Allen-Cunneen correction for
a G/G/c queue: its waits are the M/M/c ones times `(Ca^2 + Cs^2) / 2`, with Ca^2 and Cs^2 the
squared coefficients of variation of the times between arrivals and of the service times
(`allen_cunneen`). Poisson arrivals (Ca^2 = 1) and exponential service (Cs^2 = 1) give 1: M/M/c;
equal jobs (Cs^2 = 0) give 1/2: the M/D/c rule of thumb. Here the chance of waiting stays Erlang
C's and the conditional wait's tail is scaled (`T / (c - a)` times the factor), as Whitt's
approximations for G/G/c do.
"""

from __future__ import annotations

import math

__all__ = ["allen_cunneen", "arrivals_within_target", "erlang_c", "predicted_p95", "servers_for_target"]

_P = 0.05  # the tail the target is about: p95


def erlang_c(servers: int, load: float) -> float:
    """Probability that an arriving request waits, for `servers` servers and offered load `load`."""
    if servers <= 0:
        return 1.0
    if load <= 0:
        return 0.0
    if load >= servers:
        return 1.0
    # Erlang B by its stable recurrence, then C from B.
    b = 1.0
    for k in range(1, servers + 1):
        b = load * b / (k + load * b)
    rho = load / servers
    return b / (1 - rho + rho * b)


def allen_cunneen(service_cv2: float, arrivals_cv2: float = 1.0) -> float:
    """The factor on M/M/c waits for a G/G/c queue: `(Ca^2 + Cs^2) / 2` (Poisson arrivals by default)."""
    if not (math.isfinite(service_cv2) and math.isfinite(arrivals_cv2)) or service_cv2 < 0 or arrivals_cv2 < 0:
        raise ValueError(f"squared coefficients of variation must be finite and >= 0, got "
                         f"{service_cv2!r}, {arrivals_cv2!r}")
    return (arrivals_cv2 + service_cv2) / 2


def predicted_p95(servers: int, arrivals_per_second: float, service_seconds: float, *,
                  variability: float = 1.0) -> float:
    """p95 seconds of a request (wait + service); infinite when the servers cannot keep up.
    `variability`: the Allen-Cunneen factor on the waits (1: M/M/c)."""
    if arrivals_per_second <= 0:
        return service_seconds
    load = arrivals_per_second * service_seconds
    if servers <= 0 or load >= servers:
        return math.inf
    waits = erlang_c(servers, load)
    wait = variability * service_seconds / (servers - load) * math.log(waits / _P) if waits > _P else 0.0
    return service_seconds + wait


def servers_for_target(arrivals_per_second: float, service_seconds: float, target: float, *,
                       most: int, variability: float = 1.0) -> int | None:
    """The fewest servers (up to `most`) whose predicted p95 is within `target`; None when even
    `most` are not enough (or one job alone takes longer than the target)."""
    if arrivals_per_second <= 0:
        return 0
    first = max(1, math.floor(arrivals_per_second * service_seconds) + 1)  # fewer cannot keep up
    for servers in range(first, most + 1):
        if predicted_p95(servers, arrivals_per_second, service_seconds, variability=variability) <= target:
            return servers
    return None


def arrivals_within_target(servers: int, service_seconds: float, target: float, *,
                           variability: float = 1.0) -> float:
    """The highest arrival rate (requests/s) `servers` servers take with a p95 within `target`
    (0 when one job alone is over it): the capacity the autoscaler fills before adding a model."""
    if servers <= 0 or service_seconds > target:
        return 0.0
    low, high = 0.0, servers / service_seconds
    for _ in range(40):  # bisection: the p95 rises with the rate
        middle = (low + high) / 2
        p95 = predicted_p95(servers, middle, service_seconds, variability=variability)
        low, high = (middle, high) if p95 <= target else (low, middle)
    return low
