"""A1111's prompt language, as pure functions: text in, text and numbers out (no torch).

What a prompt means before any model sees it:

* `styles`: A1111's styles.csv, merged into the prompt and negative prompt first;
* `networks`: `<lora:name:w>` calls, taken out of the text (the worker applies them, the gateway
  routes on them);
* `composable`: `a AND b :0.5`, split into weighted sub-prompts;
* `schedules`: prompt editing `[from:to:when]` and alternation `[a|b]`, giving the text in force at
  each sampling step;
* `attention`: `(text:1.3)`, `[text]`, `BREAK`, giving weighted runs of text for the encoder.

The worker's encoder (`sdxlpool.worker.conditioning`) turns the result into SDXL conditioning.
"""

from sdxlpool.prompts.attention import BREAK, WeightedText, parse_attention
from sdxlpool.prompts.composable import is_composable, split_and
from sdxlpool.prompts.networks import LORA_KINDS, NetworkCall, extract_networks
from sdxlpool.prompts.schedules import prompt_schedule
from sdxlpool.prompts.styles import Style, StyledPrompts, apply_styles, merge_prompts, parse_styles_csv

__all__ = [
    "BREAK", "WeightedText", "parse_attention",
    "is_composable", "split_and",
    "LORA_KINDS", "NetworkCall", "extract_networks",
    "prompt_schedule",
    "Style", "StyledPrompts", "apply_styles", "merge_prompts", "parse_styles_csv",
]
