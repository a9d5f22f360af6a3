"""Which request fields would change an A1111 image but are not applied here: `info.sdxlpool.ignored`.

The list must hold exactly those fields: a field at A1111's default, or one that has no effect
on the image with the request's other fields (the sampler, the size), is not listed, so a client
that sends A1111's whole default payload (the `webuiapi` client does) gets an empty list, and
strict mode refuses only what really differs. The rules, field by field (A1111 1.9/1.10):

* `restore_faces`, `tiling`: listed when true (false and null are A1111's off).
* `firstpass_image` (txt2img), `infotext`, `script_name`: listed when set. `infotext` would
  overwrite the other fields from a pasted infotext; `script_args` only feed the script named by
  `script_name`, so they are not listed on their own. `enable_hr` (hires fix) is applied;
  `denoising_strength`, `hr_*` and `firstphase_*` only act with it.
* `seed_resize_from_h/w`: A1111 draws the noise at that size only when both are > 0, and that
  changes nothing when it is the image's own size.
* `eta`: used by the samplers whose function takes it: Euler a, DPM2 a, DPM++ SDE, DPM++ 2M SDE
  (k-diffusion, A1111's default 1.0) and DDIM (default 0.0). Listed when it differs from that
  default for such a sampler; null means A1111's option, taken as its default.
* `s_churn`, `s_tmin`, `s_tmax`, `s_noise`: A1111 passes them only to the samplers that take them:
  all four to Euler, Heun and DPM2, `s_noise` alone to DPM2 a, DPM++ SDE and DPM++ 2M SDE. Euler,
  Heun and DPM2 add noise only when `s_churn` > 0, so there `s_tmin`/`s_tmax`/`s_noise` matter only
  with it. Defaults: churn 0, tmin 0, tmax 0 (= infinity), noise 1.
* `s_min_uncond` (NGMS): any value > 0 changes the image, whatever the sampler.
* `alwayson_scripts`: one entry per script, `alwayson_scripts.NAME`, unless it is visibly off: no
  `args`, or a first argument `false` (A1111 scripts' "enabled" switch, as ADetailer's
  `{"args": [false]}`), or only units with `"enabled": false` (ControlNet's).
* `override_settings`: a key the worker does not act on and that can change the image is listed
  as `override_settings.KEY`; keys known to leave the image alone (saving, previews, UI) are not.
* Fields A1111 itself does not know (extensions' extras) are listed by name.

Not listed: `save_images` and `do_not_save_*` (whether the server saves a file, not the image),
`send_images`, `comments`, `force_task_id`, `override_settings_restore_afterwards`.

Pure data: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sdxlpool.api.a1111 import INERT_FIELDS

if TYPE_CHECKING:
    from sdxlpool.api.a1111 import ProcessingRequest

__all__ = ["ignored_fields", "APPLIED_OPTIONS", "IMAGE_NEUTRAL_OPTIONS"]

# eta's default for the samplers whose function takes one (A1111: eta_ancestral 1.0, eta_ddim 0.0).
_ETA_DEFAULT = {"euler a": 1.0, "dpm2 a": 1.0, "dpm++ 2s a": 1.0, "dpm++ sde": 1.0, "dpm++ 2m sde": 1.0,
                "dpm++ 2m sde heun": 1.0, "dpm++ 3m sde": 1.0, "ddim": 0.0}
_CHURN_SAMPLERS = frozenset({"euler", "heun", "dpm2"})  # s_churn, s_tmin, s_tmax, s_noise
_NOISE_SAMPLERS = frozenset({"dpm2 a", "dpm++ 2s a", "dpm++ sde", "dpm++ 2m sde", "dpm++ 2m sde heun",
                             "dpm++ 3m sde", "dpm fast"})  # s_noise only
_KNOWN_SAMPLERS = sorted({*_ETA_DEFAULT, *_CHURN_SAMPLERS, *_NOISE_SAMPLERS}, key=len, reverse=True)
_LEGACY_ALIASES = {"k_euler_a": "euler a", "k_euler": "euler", "k_heun": "heun", "k_dpm_2": "dpm2",
                   "k_dpm_2_a": "dpm2 a", "k_dpmpp_sde": "dpm++ sde", "k_dpmpp_2m_sde": "dpm++ 2m sde"}

# Option keys the worker acts on, per request (override_settings) and globally (/options).
APPLIED_OPTIONS = frozenset({
    "sd_model_checkpoint", "sd_checkpoint_hash", "sd_vae", "CLIP_stop_at_last_layers", "eta_noise_seed_delta",
    "sdxl_refiner_high_aesthetic_score", "sdxl_refiner_low_aesthetic_score",
})
# A1111 option keys that cannot change the pixels: saving, file names, previews, the UI, the API.
IMAGE_NEUTRAL_OPTIONS = frozenset({
    "samples_save", "samples_format", "samples_filename_pattern", "save_images_add_number", "grid_save",
    "grid_format", "enable_pnginfo", "save_txt", "jpeg_quality", "webp_lossless", "export_for_4chan",
    "outdir_samples", "outdir_txt2img_samples", "outdir_grids", "outdir_txt2img_grids", "outdir_save",
    "save_to_dirs", "grid_save_to_dirs", "directories_filename_pattern", "save_images_before_face_restoration",
    "save_init_img", "live_previews_enable", "live_previews_image_format", "show_progress_grid",
    "show_progress_every_n_steps", "show_progress_type", "live_preview_content", "live_preview_refresh_period",
    "show_progressbar", "add_model_hash_to_info", "add_model_name_to_info", "add_vae_hash_to_info",
    "add_vae_name_to_info", "add_version_to_infotext", "add_user_name_to_info", "disable_weights_auto_swap",
    "sd_checkpoint_cache", "sd_vae_checkpoint_cache", "sd_checkpoints_limit", "sd_checkpoints_keep_in_cpu",
    "memmon_poll_rate", "multiple_tqdm", "print_hypernet_extra", "enable_console_prompts",
})


def ignored_fields(request: ProcessingRequest, *, sampler_name: str, width: int, height: int) -> tuple[str, ...]:
    """The request's fields that would change an A1111 image and are not applied, in a fixed order.

    `sampler_name` is the sampler the request resolves to (any A1111 spelling), `width`/`height`
    the image's size.
    """
    ignored = [name for name, off in INERT_FIELDS.items() if getattr(request, name, off) not in (off, False, None, "")]
    h, w = request.seed_resize_from_h, request.seed_resize_from_w
    if h > 0 and w > 0 and (h // 8, w // 8) != (height // 8, width // 8):  # A1111 compares latent sizes
        ignored += ["seed_resize_from_h", "seed_resize_from_w"]
    ignored += _sampler_parameters(request, _sampler_key(sampler_name))
    if request.s_min_uncond is not None and request.s_min_uncond != 0:
        ignored.append("s_min_uncond")
    ignored += [f"alwayson_scripts.{name}" for name, entry in request.alwayson_scripts.items() if _script_on(entry)]
    ignored += [f"override_settings.{key}" for key in (request.override_settings or {})
                if key not in APPLIED_OPTIONS and key not in IMAGE_NEUTRAL_OPTIONS]
    ignored += sorted(request.model_extra or {})  # fields A1111 itself does not know (extensions)
    return tuple(ignored)


def _sampler_key(name: str) -> str:
    """"DPM++ 2M SDE Karras" -> "dpm++ 2m sde": the sampler part of any A1111 spelling, lower case."""
    key = name.strip().lower()
    key = _LEGACY_ALIASES.get(key, key)
    for known in _KNOWN_SAMPLERS:  # longest first: "dpm2 a" before "dpm2", "euler a" before "euler"
        if key == known or key.startswith(known + " "):
            return known
    return key


def _sampler_parameters(request: ProcessingRequest, sampler: str) -> list[str]:
    ignored = []
    eta_default = _ETA_DEFAULT.get(sampler)
    if eta_default is not None and request.eta is not None and request.eta != eta_default:
        ignored.append("eta")
    churning = sampler in _CHURN_SAMPLERS and request.s_churn is not None and request.s_churn > 0
    if churning:
        ignored.append("s_churn")
        if request.s_tmin not in (None, 0):
            ignored.append("s_tmin")
        if request.s_tmax not in (None, 0) and not math.isinf(request.s_tmax or 0):
            ignored.append("s_tmax")
    if (churning or sampler in _NOISE_SAMPLERS) and request.s_noise not in (None, 1):
        ignored.append("s_noise")
    return ignored


def _script_on(entry: Any) -> bool:
    args = entry.get("args") if isinstance(entry, Mapping) else entry
    if not isinstance(args, list) or not args:
        return False
    if args[0] is False:
        return False
    return not all(isinstance(arg, Mapping) and arg.get("enabled") is False for arg in args)
