"""Scorers: how good each remaining backend is for the request, each in [0, 1]. One module each.

    completion_time  best expected completion / own: the soonest finisher scores 1.0
    preference       earlier in the request's GPU list scores higher; neutral without a list
    cost             cheaper pricePerHour (or price per step) scores higher, while within a bound
                     of the soonest or a latency budget
    least_inflight   fewer requests in flight from this gateway scores higher (least-connections)
    lora_affinity    a worker holding the request's LoRAs scores higher, while within a bound of the soonest
"""

from sdxlpool.gateway.routing.scorers.completion_time import CompletionTime
from sdxlpool.gateway.routing.scorers.cost import Cost
from sdxlpool.gateway.routing.scorers.least_inflight import LeastInflight
from sdxlpool.gateway.routing.scorers.lora_affinity import LoraAffinity
from sdxlpool.gateway.routing.scorers.preference import Preference

__all__ = ["CompletionTime", "Cost", "LeastInflight", "LoraAffinity", "Preference"]
