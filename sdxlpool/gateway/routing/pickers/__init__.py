"""Pickers: choose one backend from the weighted totals. One module each.

    best         the highest weighted total; ties drawn at random
    round_robin  the next candidate in backend-name order, ignoring scores (nginx/HAProxy round-robin)
    first_free   the first idle candidate in backend-name order, else a random one
"""

from sdxlpool.gateway.routing.pickers.best import Best
from sdxlpool.gateway.routing.pickers.first_free import FirstFree
from sdxlpool.gateway.routing.pickers.round_robin import RoundRobin

__all__ = ["Best", "FirstFree", "RoundRobin"]
