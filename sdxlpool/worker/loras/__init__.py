"""LoRAs: the files in --lora-dir, the prompt's `<lora:name:w>` calls, and the adapters on the GPU.

Three parts, top to bottom:

* **The library** (`LoraLibrary`): the `.safetensors` files under `--lora-dir` (recursively), named
  as A1111 names them: `name` is the file name without its extension, `alias` the `ss_output_name`
  of kohya's training metadata (else the name), `metadata` the safetensors header's `__metadata__`
  (values that are JSON objects parsed, cover images dropped, A1111's display order). Only the
  header is read. `.pt`/`.ckpt` files are skipped with a log line: they are pickles, and
  unpickling a downloaded file can run code. A request finds a LoRA by name, or by alias when no
  two files share it (A1111's rule); a name not found triggers one re-scan, as A1111 does.
* **Resolving** (`resolve_loras`, pure): the calls `extract_networks` took out of the prompt ->
  the LoRAs to apply with their text-encoder and UNet multipliers, and the `ignored` entries for
  the rest ("prompt: <lora:x:1> (no such LoRA)"). The same LoRA twice adds its multipliers (A1111
  applies it twice; a LoRA's change is linear in its multiplier).
* **The adapters** (`LoraAdapters`, GPU thread only): LoRAs loaded into a base pipeline through
  diffusers' PEFT backend (`load_lora_weights`, which converts kohya's key layout), kept in an LRU
  cache bounded by `--lora-cache-mb` (the adapters' tensor bytes on the device). `applied(...)` is
  a context manager around one job's base pass: it loads what is missing, activates exactly the
  job's adapters with their multipliers per component (a component whose multiplier is 0 does not
  run that adapter at all, so weight 0 is the baseline exactly), and on the way out, whatever
  happened, disables every adapter: the next job runs the unchanged weights. Nothing is merged into
  the weights, so there is nothing to restore and no rounding drift.

The refiner gets no LoRA: a kohya SDXL LoRA is trained for the base UNet (the refiner's has other
shapes) and A1111 does not apply it to the refiner either. Its text_encoder_2 is the base's module
(shared, see checkpoints.py), so the refiner's text must be encoded outside `applied(...)`, where
every adapter is off; `generate()` does so.
"""


from sdxlpool.worker.loras.adapters import LoraAdapters
from sdxlpool.worker.loras.library import LoraFile, LoraLibrary, read_safetensors_metadata
from sdxlpool.worker.loras.resolve import LoraUse, infotext_hashes, resolve_loras

__all__ = ["LoraFile", "LoraLibrary", "LoraUse", "LoraAdapters", "resolve_loras", "infotext_hashes",
           "read_safetensors_metadata"]
