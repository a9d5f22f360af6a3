"""DeepCache-style feature reuse: an opt-in, inexact fast mode (`--fast-mode deepcache`, issue 16).

DeepCache (Ma, Fang and Wang, "DeepCache: Accelerating Diffusion Models for Free", CVPR 2024,
github.com/horseee/DeepCache) rests on one observation: between adjacent denoising steps the UNet's
high-level features (its deep blocks) hardly change, while the shallow branch (the first down
block, the last up block and the skip connection between them) carries the detail that does. So
every `interval`-th UNet evaluation is *full* and keeps the feature that enters the shallow up
blocks; the evaluations between are *cached*: the time embedding, `conv_in`, the down blocks up to
`branch`, then the shallow up blocks fed with the kept feature, and `conv_out`. The deep down
blocks, the mid block and the deep up blocks do not run.

With SDXL's base (3 down blocks, 3 up blocks) and `branch=0` a cached evaluation runs down block 0
and up block 2 (the 320-channel pair at full latent size); `branch=1` adds the 640-channel pair;
the deepest branch (`branch` = down blocks - 1) skips only the mid block. The refiner's UNet (4
blocks a side) is cut the same way. The down block at `branch` runs whole: its downsampler's output
feeds only the deep path and is dropped (one strided convolution, a few per cent of the branch),
which keeps diffusers' own block `forward`s untouched rather than copied.

This is the uniform schedule of the paper's `cache_interval` and a block-level `cache_block_id`
(the reference implementation can also cut inside a block, `cache_layer_id`; not offered).

Scope: a `DeepCacheUNet` stands in for the UNet of *one pass* (`for_pass`: the base, refiner or
hires pipeline call of one job or one batch), in that job's own pipeline object; the loaded module
is never patched. Its cache dies with the pass, so nothing carries into the next pass, job or batch.
A batch is one pass: every row is refreshed at the same evaluations. A full evaluation also happens
whenever the input's shape, dtype or device, or the conditioning tensor (a prompt-editing switch)
differs from the one the cache was made with.

The split forward follows diffusers' `UNet2DConditionModel.forward` (0.3x-0.4x) for what SDXL's
UNets use (no class labels, masks, ControlNet or adapter residuals, GLIGEN or a LoRA scale in
`cross_attention_kwargs`); `check_unet` refuses other configurations at start-up, and a call with
arguments it does not implement runs the module's own forward (counted as full, cache dropped).
With `interval=1` every evaluation is full and the images equal the exact path's up to float noise
(tests/worker/test_deepcache.py), which pins the split forward to diffusers' own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["DeepCache", "DeepCacheUNet", "check_unet", "chosen", "full_evaluation", "for_pass", "shallow_res_count"]


@dataclass(frozen=True)
class DeepCache:
    """DeepCache's parameters: a full UNet evaluation every `interval` evaluations (1: all full,
    no speed-up), the shallow branch running every evaluation down to down block `branch`."""

    interval: int = 3
    branch: int = 0

    def __post_init__(self) -> None:
        if self.interval < 1:
            raise ValueError(f"deepcache interval must be at least 1, got {self.interval}")
        if self.branch < 0:
            raise ValueError(f"deepcache branch must be 0 or more, got {self.branch}")


# -- decisions (pure) ---------------------------------------------------------------------------------
def chosen(fast_mode: str, interval: int, branch: int) -> DeepCache | None:
    """The worker's `--fast-mode` and `--deepcache-*` flags as a job's DeepCache (None: off, exact)."""
    return DeepCache(interval, branch) if fast_mode == "deepcache" else None


def full_evaluation(index: int, interval: int) -> bool:
    """Whether the pass's `index`-th UNet evaluation (from 0) is full: the first and every
    `interval`-th after it (DeepCache's uniform schedule)."""
    return index % interval == 0


def shallow_res_count(up_resnets: list[int], branch: int) -> int:
    """How many skip tensors (conv_in's first, then each down layer's) the shallow up blocks take:
    the last `branch + 1` up blocks, one per resnet. A cached evaluation keeps these and drops the
    rest (the downsampler output of down block `branch`, which only the deep path takes)."""
    return sum(up_resnets[len(up_resnets) - 1 - branch:])


def check_unet(unet: Any, branch: int) -> None:
    """Refuse a UNet the split forward does not implement (ValueError naming what), before any job."""
    config = unet.config
    problems = []
    if config.center_input_sample:
        problems.append("center_input_sample")
    if getattr(unet, "class_embedding", None) is not None:
        problems.append("class embeddings")
    if config.addition_embed_type == "image_hint":
        problems.append("addition_embed_type image_hint")
    if unet.mid_block is None:
        problems.append("no mid block")
    if len(unet.down_blocks) != len(unet.up_blocks):
        problems.append("unequal down and up blocks")
    if problems:
        raise ValueError(f"--fast-mode deepcache does not support this UNet ({', '.join(problems)})")
    if branch >= len(unet.down_blocks):
        raise ValueError(f"deepcache branch must be below the UNet's {len(unet.down_blocks)} down blocks, "
                         f"got {branch}")


# -- the shell over diffusers' UNet -------------------------------------------------------------------------
class DeepCacheUNet:
    """One pass's UNet: calls run DeepCache's schedule over the loaded `unet`'s own blocks; every
    other attribute (config, dtype, add_embedding, ...) is the module's, as the pipeline reads them.

    `evaluations` and `full_evaluations` count this pass's calls (for tests and the benchmark)."""

    _UNSUPPORTED = ("class_labels", "attention_mask", "down_block_additional_residuals",
                    "mid_block_additional_residual", "down_intrablock_additional_residuals",
                    "encoder_attention_mask")

    def __init__(self, unet: Any, params: DeepCache) -> None:
        self.unet = unet
        self.params = params
        self.evaluations = 0
        self.full_evaluations = 0
        self._feature: Any = None  # what entered the first shallow up block at the last full evaluation
        self._made_with: tuple[Any, ...] | None = None  # (shape, dtype, device) it was made at
        self._conditioning: Any = None  # the encoder_hidden_states tensor it was made with

    def __getattr__(self, name: str) -> Any:
        return getattr(self.unet, name)  # only for what this object does not define itself

    def __call__(self, sample: Any, timestep: Any, encoder_hidden_states: Any, timestep_cond: Any = None,
                 cross_attention_kwargs: dict[str, Any] | None = None,
                 added_cond_kwargs: dict[str, Any] | None = None, return_dict: bool = True, **other: Any) -> Any:
        index = self.evaluations
        self.evaluations += 1
        if any(other.get(name) is not None for name in self._UNSUPPORTED) or (cross_attention_kwargs or {}).keys():
            # Not what the SDXL pipelines pass: the module's own forward, and a fresh cache after it.
            self.full_evaluations += 1
            self._feature = None
            return self.unet(sample, timestep, encoder_hidden_states, timestep_cond=timestep_cond,
                             cross_attention_kwargs=cross_attention_kwargs, added_cond_kwargs=added_cond_kwargs,
                             return_dict=return_dict, **other)
        made_with = (tuple(sample.shape), sample.dtype, sample.device)
        full = (full_evaluation(index, self.params.interval) or self._feature is None
                or made_with != self._made_with or encoder_hidden_states is not self._conditioning)
        if full:
            self.full_evaluations += 1
        out = self._forward(sample, timestep, encoder_hidden_states, timestep_cond, added_cond_kwargs, full=full)
        if full:
            self._made_with, self._conditioning = made_with, encoder_hidden_states
        if not return_dict:
            return (out,)
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        return UNet2DConditionOutput(sample=out)

    def _forward(self, sample: Any, timestep: Any, encoder_hidden_states: Any, timestep_cond: Any,
                 added_cond_kwargs: dict[str, Any] | None, *, full: bool) -> Any:
        """diffusers' UNet2DConditionModel.forward, cut at the branch when not `full`."""
        unet = self.unet
        branch = self.params.branch
        first_shallow = len(unet.up_blocks) - 1 - branch  # index of the first up block that always runs
        factor = 2 ** unet.num_upsamplers
        forward_upsample_size = any(dim % factor != 0 for dim in sample.shape[-2:])

        # Time and added (text, size) embeddings, and the text states: cheap, every evaluation.
        emb = unet.time_embedding(unet.get_time_embed(sample=sample, timestep=timestep), timestep_cond)
        aug = unet.get_aug_embed(emb=emb, encoder_hidden_states=encoder_hidden_states,
                                 added_cond_kwargs=added_cond_kwargs)
        emb = emb + aug if aug is not None else emb
        if unet.time_embed_act is not None:
            emb = unet.time_embed_act(emb)
        text = unet.process_encoder_hidden_states(encoder_hidden_states=encoder_hidden_states,
                                                  added_cond_kwargs=added_cond_kwargs)

        # Down: every block when full, else those of the shallow branch.
        sample = unet.conv_in(sample)
        res: tuple[Any, ...] = (sample,)
        for i, block in enumerate(unet.down_blocks):
            if not full and i > branch:
                break
            if getattr(block, "has_cross_attention", False):
                sample, out = block(hidden_states=sample, temb=emb, encoder_hidden_states=text)
            else:
                sample, out = block(hidden_states=sample, temb=emb)
            res += out
        if full:
            if getattr(unet.mid_block, "has_cross_attention", False):
                sample = unet.mid_block(sample, emb, encoder_hidden_states=text)
            else:
                sample = unet.mid_block(sample, emb)
        else:
            res = res[:shallow_res_count([len(b.resnets) for b in unet.up_blocks], branch)]

        # Up: the deep blocks when full; then the shallow ones, from the kept feature when cached.
        for i, block in enumerate(unet.up_blocks):
            if i < first_shallow and not full:
                continue
            if i == first_shallow:
                if full:
                    self._feature = sample
                else:
                    sample = self._feature
            taken = len(block.resnets)
            skips, res = res[-taken:], res[:-taken]
            upsample_size = res[-1].shape[2:] if i < len(unet.up_blocks) - 1 and forward_upsample_size else None
            if getattr(block, "has_cross_attention", False):
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=skips,
                               encoder_hidden_states=text, upsample_size=upsample_size)
            else:
                sample = block(hidden_states=sample, temb=emb, res_hidden_states_tuple=skips,
                               upsample_size=upsample_size)

        if unet.conv_norm_out:
            sample = unet.conv_act(unet.conv_norm_out(sample))
        return unet.conv_out(sample)


@contextmanager
def for_pass(pipe: Any, params: DeepCache | None) -> Iterator[DeepCacheUNet | None]:
    """Inside: `pipe` (a job's own pipeline object) runs its UNet through a fresh `DeepCacheUNet`
    (None: the module itself, the exact path); after: the module again, the cache gone."""
    if params is None:
        yield None
        return
    loaded = pipe.unet
    wrapper = DeepCacheUNet(loaded, params)
    # Not pipe.unet = ...: DiffusionPipeline.__setattr__ would re-register its config entry.
    object.__setattr__(pipe, "unet", wrapper)
    try:
        yield wrapper
    finally:
        object.__setattr__(pipe, "unet", loaded)
