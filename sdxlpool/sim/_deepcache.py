"""DeepCache in the simulator's timing model (`sim-worker --fast-mode deepcache`).

A pass's iterations follow DeepCache's schedule (`sdxlpool.worker.deepcache.full_evaluation`: the
first and every `interval`-th are full); a cached one takes its share of a full one's FLOPs on SDXL's
base UNet at 1024x1024, counted by `benchmarks/gpu_sdxl.py --flops-only` (torch's FlopCounterMode on
the meta device, CFG batch 2): with interval 3 and branch 0 a 20-step image does about 2.4x less
work. A model of the work skipped, not a measured GPU speed-up: the shallow blocks run at the full
latent size, so a GPU gains less than the FLOPs say (issue 16 measures it where one is lent).
"""

from __future__ import annotations

from sdxlpool.worker.deepcache import DeepCache, full_evaluation

__all__ = ["DEEPCACHE_CACHED_SHARE", "evaluation_share"]

# A cached evaluation's FLOPs over a full one, by --deepcache-branch (SDXL's base has 3 down blocks):
# benchmarks/results/2026-12-07-deepcache-flops-real-1024-i3-b{0,1}.json; branch 2, which skips only
# the mid block, counted the same way (11.93 of 13.52 TFLOP).
DEEPCACHE_CACHED_SHARE: dict[int, float] = {0: 0.0672, 1: 0.3074, 2: 0.8821}


def evaluation_share(index: int, deepcache: DeepCache | None) -> float:
    """The time of a pass's `index`-th iteration (from 0) as a share of a full UNet evaluation's
    (1 on the exact path)."""
    if deepcache is None or full_evaluation(index, deepcache.interval):
        return 1.0
    return DEEPCACHE_CACHED_SHARE[deepcache.branch]
