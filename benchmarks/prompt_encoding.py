"""Cost of A1111's prompt language in the worker: parsing and encoding vs diffusers' plain encode.

For four prompts (short, weighted, three 75-token chunks, scheduled: prompt editing and alternation)
it times, on the tiny SDXL model, in one run:

* parse: what happens before any model runs (networks and AND taken out, the prompt's schedule,
  attention, tokenizing and chunking for both encoders);
* encode: the whole conditioning the worker builds for a job (`build_conditioning`: parse, both text
  encoders, emphasis, padding, every schedule entry), prompt and empty negative prompt;
* diffusers: `StableDiffusionXLPipeline.encode_prompt` on the same text (plain: no weights, cut at 77
  tokens, one text), with classifier-free guidance and an empty negative prompt, as the worker did before.

Reported per prompt: milliseconds (median, p10, p90, min, max over the repeats) for each side and
the ratios of the medians against diffusers. Sides are interleaved repeat by repeat so machine
drift hits them alike. The tiny model's encoders are small, so the ratios here weigh the Python
work heavily; on a real model's encoders (`--device cuda` with real weights is not built here) the
encoder passes dominate.

    python benchmarks/prompt_encoding.py [--repeats 50] [--steps 20] [--device cpu] [--out F]
    python benchmarks/prompt_encoding.py --smoke      # seconds: 3 repeats
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sdxlpool.testing.pool import bench_arguments, write_report
from sdxlpool.testing.stats import spread

PROMPTS = {
    "short": "a red cat sitting on a chair, photo",
    "weighted": "(a red cat:1.3) sitting on [a chair], ((masterpiece)), (photo:0.8), detailed",
    "three_chunks": "",  # filled in for the model's tokenizer: phrases joined by commas up to three chunks
    "scheduled": "a [red:blue:0.5] cat [sitting|standing] on a [chair::0.8], photo",
}
SMOKE = {"repeats": 3}
PHRASE = "a red cat sitting on a wooden chair in a sunny garden"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--steps", type=int, default=20, help="sampling steps the schedules are built for")
    parser.add_argument("--device", default="cpu")
    args = bench_arguments(parser, SMOKE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch
    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging

    from sdxlpool.worker.tiny import write_tiny_model

    base, _ = write_tiny_model(Path(tempfile.mkdtemp(prefix="sdxl-prompt-encoding-")) / "tiny")
    pipe = StableDiffusionXLPipeline.from_pretrained(base, local_files_only=True).to(args.device)
    pipe.set_progress_bar_config(disable=True)
    diffusers_logging.set_verbosity_error()  # its warning that it cuts long prompts at 77 tokens, per call
    PROMPTS["three_chunks"] = three_chunks(pipe.tokenizer)
    cases = {}
    with torch.inference_mode():
        for name, prompt in PROMPTS.items():
            cases[name] = measure(pipe, prompt, args.steps, args.repeats, args.device)
            print(f"{name:13s} chunks {cases[name]['chunks']}  parse {cases[name]['parse_over_diffusers']:.3f}x  "
                  f"encode {cases[name]['encode_over_diffusers']:.3f}x diffusers' encode_prompt")
    write_report(args.out, model="tiny", device=args.device, repeats=args.repeats, steps=args.steps,
                 smoke=args.smoke, prompts=PROMPTS, cases=cases)
    return 0


def three_chunks(tokenizer: Any) -> str:
    """The longest repetition of PHRASE, comma-joined, that fits three 75-token chunks (with A1111's
    comma backtracking): 151 to 225 tokens."""
    from sdxlpool.worker.conditioning import prompt_chunks

    count = 1
    while len(prompt_chunks(", ".join([PHRASE] * (count + 1)), tokenizer)) <= 3:
        count += 1
    return ", ".join([PHRASE] * count)


def measure(pipe: Any, prompt: str, steps: int, repeats: int, device: str) -> dict[str, Any]:
    import torch

    from sdxlpool.prompts import parse_attention
    from sdxlpool.prompts.schedules import prompt_schedule
    from sdxlpool.worker.conditioning import build_conditioning, pipeline_encoders, prompt_chunks, prompt_text

    encoders = pipeline_encoders(pipe)

    def parse() -> Any:
        schedule = prompt_schedule(prompt_text(prompt).text, steps)
        for _, text in schedule:
            parse_attention(text)
            for encoder in encoders:
                prompt_chunks(text, encoder.tokenizer)
        return schedule

    def encode() -> Any:
        return build_conditioning(prompt_schedule(prompt_text(prompt).text, steps), [(steps, "")], encoders)

    def plain() -> Any:
        return pipe.encode_prompt(prompt, device=torch.device(device), do_classifier_free_guidance=True)

    def timed(fn: Any) -> float:
        if device != "cpu":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device != "cpu":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) * 1000

    for fn in (parse, encode, plain):  # first calls: caches, lazy imports
        fn()
    sides: dict[str, list[float]] = {"parse": [], "encode": [], "diffusers": []}
    for i in range(repeats):
        order = [("parse", parse), ("encode", encode), ("diffusers", plain)]
        for side, fn in order if i % 2 == 0 else reversed(order):
            sides[side].append(timed(fn))
    schedule = parse()
    conditioning = encode()
    ms = {side: spread(values) for side, values in sides.items()}
    base = ms["diffusers"]["median"] or float("nan")
    return {
        "tokens": len(pipe.tokenizer(prompt_text(prompt).text, add_special_tokens=False)["input_ids"]),
        "chunks": int(conditioning.prompt.embeds[0].shape[0]) // 77,
        "schedule_entries": len(schedule),
        "parse_ms": ms["parse"],
        "encode_ms": ms["encode"],
        "diffusers_encode_ms": ms["diffusers"],
        "parse_over_diffusers": round((ms["parse"]["median"] or 0) / base, 4),
        "encode_over_diffusers": round((ms["encode"]["median"] or 0) / base, 4),
    }


if __name__ == "__main__":
    raise SystemExit(main())
