"""The worker's CPU work around each image: PNG encoding with the infotext, base64, and the JSON of
the txt2img answer, per image, before (Pillow's encoder, compress level 1) and after
(`sdxlpool.worker.encoding.png_bytes`: Up filter, Huffman-only deflate in strips on threads).

Measured in-process on this machine's CPU, per image, for two kinds of 1024x1024 RGB image:
*noise* (incompressible: what SDXL with random weights draws, the worst case) and *photo-like*
(gradients plus sensor-like noise). The JSON is the worker's own: a `Txt2ImgResponse` through the
txt2img route's response field, serialised as FastAPI serialises it (`serialize_response`,
pydantic's JSON fast path). The two sides alternate, repeat after repeat, on the same images.
Also reported: Pillow's levels 0/1/6 (time and size), the PNG sizes, the seconds the job thread
spends handing an image over to the encoder threads (`ImageEncoder.submit`), and the overhead as a
share of a 1.0 s GPU image (the goal of issue 16: under 3%).

    python benchmarks/image_encoding.py [--size 1024] [--repeats 15] [--out F]
    python benchmarks/image_encoding.py --smoke      # seconds: 256x256, 3 repeats

Bounded: a fixed number of encodings, no network.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from sdxlpool.testing.pool import bench_arguments, write_report
from sdxlpool.testing.stats import spread

SMOKE = {"size": 256, "repeats": 3}
GPU_IMAGE_SECONDS = 1.0  # issue 16's target time per image; the overhead goal is 3% of it
INFOTEXT = ("futuristic city with neon lights, rainy streets, bright colors, detailed\nNegative prompt: blurry\n"
            "Steps: 25, Sampler: Euler, Schedule type: Automatic, CFG scale: 5, Seed: 10, Size: 1024x1024, "
            "Model hash: 0123456789, Model: sd_xl_base_1.0, Refiner: sd_xl_refiner_1.0, Refiner switch at: 0.8, "
            "Version: sdxlpool")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=15)
    args = bench_arguments(parser, SMOKE)
    from sdxlpool.worker.encoding import ImageEncoder, encode_png_pil, png_bytes

    json_answer = _answer_json()
    images = _images(args.size)
    results: dict[str, Any] = {"size": args.size, "repeats": args.repeats, "smoke": args.smoke,
                               "cpu_count": os.cpu_count(), "gpu_image_seconds": GPU_IMAGE_SECONDS, "kinds": {}}
    encoder = ImageEncoder(lambda image, text: base64.b64encode(png_bytes(image, text)).decode("ascii"))
    try:
        for kind, image in images.items():
            png_bytes(image, INFOTEXT), encode_png_pil(image, INFOTEXT)  # warm-up: threads, imports
            sides: dict[str, dict[str, list[float]]] = {"before": _empty(), "after": _empty()}
            sizes = {}
            for n in range(args.repeats):
                order = [("before", encode_png_pil), ("after", png_bytes)]
                for side, encode in order if n % 2 == 0 else order[::-1]:
                    sizes[side] = _once(encode, image, json_answer, sides[side])
            handover = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                batch = encoder.submit([image], [INFOTEXT])
                handover.append(time.perf_counter() - started)
                batch.futures[0].result(timeout=60)
            results["kinds"][kind] = {
                **{side: _summary(times, sizes[side]) for side, times in sides.items()},
                "pillow_levels": _pillow_levels(image, args.repeats),
                "handover_ms": spread(1000 * s for s in handover),
            }
    finally:
        encoder.close()
    for row in results["kinds"].values():
        row["after_over_before_total"] = round(row["after"]["total_ms"]["median"] / row["before"]["total_ms"]["median"], 4)
    worst = max(row["after"]["total_ms"]["median"] for row in results["kinds"].values())
    results["goal"] = {"percent_of_gpu_image_max": 3.0,
                       "after_percent_of_gpu_image_worst_kind": round(100 * worst / 1000 / GPU_IMAGE_SECONDS, 2)}
    print(json.dumps(results, indent=2))
    write_report(args.out, **results)
    return 0


def _empty() -> dict[str, list[float]]:
    return {"png_ms": [], "base64_ms": [], "json_ms": [], "total_ms": []}


def _once(encode: Callable[[Any, str], bytes], image: Any, answer_json: Callable[[str], bytes],
          times: dict[str, list[float]]) -> dict[str, int]:
    """One image: PNG, base64, the answer's JSON; the times appended to `times`, the sizes returned."""
    t0 = time.perf_counter()
    png = encode(image, INFOTEXT)
    t1 = time.perf_counter()
    text = base64.b64encode(png).decode("ascii")
    t2 = time.perf_counter()
    body = answer_json(text)
    t3 = time.perf_counter()
    for key, seconds in (("png_ms", t1 - t0), ("base64_ms", t2 - t1), ("json_ms", t3 - t2), ("total_ms", t3 - t0)):
        times[key].append(1000 * seconds)
    return {"png_bytes": len(png), "json_bytes": len(body)}


def _summary(times: dict[str, list[float]], sizes: dict[str, int]) -> dict[str, Any]:
    return {**{key: spread(values) for key, values in times.items()}, **sizes}


def _pillow_levels(image: Any, repeats: int) -> dict[str, dict[str, Any]]:
    """Pillow's PNG encoder at compress levels 0, 1 (the former worker's) and 6 (Pillow's default)."""
    levels = {}
    for level in (0, 1, 6):
        times, size = [], 0
        for _ in range(max(1, repeats // 3)):
            buffer = io.BytesIO()
            started = time.perf_counter()
            image.save(buffer, format="PNG", compress_level=level)
            times.append(1000 * (time.perf_counter() - started))
            size = buffer.tell()
        levels[str(level)] = {"ms": spread(times), "png_bytes": size}
    return levels


def _images(size: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    y, x = np.mgrid[0:size, 0:size] * (1024 / size)
    photo = np.stack([x / 4, y / 4, (x + y) / 8], -1) + rng.normal(0, 6, (size, size, 3))
    return {"noise": Image.fromarray(noise), "photo_like": Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8))}


def _answer_json() -> Callable[[str], bytes]:
    """The worker's txt2img answer with one image, serialised as FastAPI does it for the route."""
    from fastapi.routing import serialize_response

    from sdxlpool.api.a1111 import Txt2ImgRequest, Txt2ImgResponse
    from sdxlpool.worker.routes.txt2img import router

    route = next(r for r in router.routes if getattr(r, "path", "") == "/sdapi/v1/txt2img")
    field = route.response_field  # type: ignore[attr-defined]
    parameters = Txt2ImgRequest(prompt="futuristic city", steps=25).model_dump()
    info = json.dumps({"infotexts": [INFOTEXT], "sdxlpool": {"inference_seconds": 1.0}})
    loop = asyncio.new_event_loop()  # kept open for the run: FastAPI awaits serialize_response on its loop

    def serialise(image: str) -> bytes:
        answer = Txt2ImgResponse(images=[image], parameters=parameters, info=info)
        body: bytes = loop.run_until_complete(serialize_response(field=field, response_content=answer, dump_json=True))
        return body

    return serialise


if __name__ == "__main__":
    sys.exit(main())
