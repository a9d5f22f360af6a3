"""Upscalers: what hires fix (`hr_upscaler`) and the extras routes (`upscaler_1`, `upscaler_2`) can use.

A1111 (1.9/1.10 `modules/upscaler.py`, `modules/images.py`, `scripts/postprocessing_upscale.py`,
read for their behaviour) lists its upscalers by name; this worker offers what it really has:

* `"None"`, `"Lanczos"`, `"Nearest"`: PIL resampling, always there (A1111 lists them with scale 4);
* model upscalers (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ... `.pth`/`.pt`/`.safetensors` files)
  found under `--upscaler-dir`, named by their file name without the extension as A1111 names
  ESRGAN models, loaded with the maintained `spandrel` library (the optional extra
  `sdxlpool[upscalers]`). Without spandrel, model files are not listed: a worker never offers what
  it cannot run. Pickles are read with spandrel's restricted unpickler, never `torch.load`'s default;
* the latent modes of hires fix (`sdxlpool.api.generation.LATENT_UPSCALE_MODES`) are no upscalers
  here: they interpolate latents (`upscale_latents`) and have their own list route.

Sizes follow A1111: upscaling an image by `scale` aims at (w x scale, h x scale) floored to a
multiple of 8, applies the upscaler up to three times until the image is at least that large, then
resizes to exactly that size with Lanczos (`upscale_by`); resizing to a given size (hires fix) uses
Lanczos only when no upscaler is named or the image shrinks (`upscale_to`).

Model upscalers run in tiles of 192 pixels with 8 pixels of overlap (A1111's ESRGAN_tile and
ESRGAN_tile_overlap defaults), blended linearly across the overlap (`tiled`), so a large image
needs the memory of one tile, not of the whole image. The last model used stays loaded.

`available_upscalers(settings)` is the registry every list route reads (upscalers, and the
`realesrgan-models` list picks its model entries).
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sdxlpool.api.generation import LATENT_UPSCALE_MODES
from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.settings import WorkerSettings

__all__ = ["UpscalerEntry", "available_upscalers", "spandrel_available", "find_upscaler", "upscale_by",
           "upscale_to", "upscale_latents", "tiled", "ModelUpscalers", "MODEL_EXTENSIONS", "TILE", "TILE_OVERLAP",
           "EXTRA_NAME"]

log = logging.getLogger(__name__)

MODEL_EXTENSIONS = (".pth", ".pt", ".safetensors")  # A1111's ESRGAN file filter
TILE, TILE_OVERLAP = 192, 8  # A1111's ESRGAN_tile / ESRGAN_tile_overlap defaults
EXTRA_NAME = "upscalers"  # pip install 'sdxlpool[upscalers]' brings spandrel
_MAX_PASSES = 3  # A1111 applies an upscaler at most three times to reach the asked size

Kind = Literal["none", "lanczos", "nearest", "model"]


@dataclass(frozen=True)
class UpscalerEntry:
    """One upscaler: its A1111 name, what it is, and (for a model) its file and native scale."""

    name: str
    kind: Kind
    path: Path | None = None
    scale: float = 4

    def as_a1111(self) -> dict[str, Any]:
        """One entry of GET /sdapi/v1/upscalers (A1111's shape)."""
        return {"name": self.name, "model_name": "spandrel" if self.kind == "model" else None,
                "model_path": str(self.path) if self.path is not None else None, "model_url": None,
                "scale": self.scale}


_BUILTIN = (UpscalerEntry("None", "none"), UpscalerEntry("Lanczos", "lanczos"), UpscalerEntry("Nearest", "nearest"))


def spandrel_available() -> bool:
    """Whether model upscalers can run here: spandrel (and the torchvision it needs) import."""
    if importlib.util.find_spec("spandrel") is None:
        return False
    try:
        import spandrel  # noqa: F401
    except Exception:  # noqa: BLE001 - e.g. a torchvision built for another torch: no model upscalers
        log.warning("spandrel is installed but does not import; model upscalers are off", exc_info=True)
        return False
    return True


def available_upscalers(settings: WorkerSettings) -> list[UpscalerEntry]:
    """Every upscaler this worker can run, in A1111's order: None, Lanczos, Nearest, then the model
    files of --upscaler-dir (sorted by name; a scan per call, so files added later are found)."""
    entries = list(_BUILTIN)
    folder = settings.upscaler_dir
    if folder is None or not spandrel_available():
        return entries
    if not folder.is_dir():
        log.warning("--upscaler-dir %s is not a folder: no model upscalers offered", folder)
        return entries
    files = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_EXTENSIONS),
                   key=lambda p: (p.stem.lower(), str(p)))
    taken = {entry.name for entry in entries}
    for path in files:
        if path.stem in taken:  # two files of one name: the first (by path) answers to it
            continue
        taken.add(path.stem)
        entries.append(UpscalerEntry(path.stem, "model", path, _scale_from_name(path.stem)))
    return entries


def _scale_from_name(stem: str) -> float:
    """A model's scale as its name says it ("4x-UltraSharp", "RealESRGAN_x2plus"); 4 when it does not
    (only for the list: the loaded model's own scale is what upscaling uses)."""
    match = re.search(r"(?<![a-z0-9])(\d)x|x(\d)(?!\d)", stem.lower())
    return float(next(g for g in match.groups() if g)) if match else 4.0


def find_upscaler(entries: list[UpscalerEntry], name: str, *, field: str) -> UpscalerEntry:
    """The upscaler called `name` (A1111 matches names exactly); a 422 naming `field` otherwise."""
    for entry in entries:
        if entry.name == name:
            return entry
    known = ", ".join(e.name for e in entries)
    latent = f"; latent modes (hires fix only): {', '.join(LATENT_UPSCALE_MODES)}" if field == "hr_upscaler" else ""
    raise InvalidRequest(field, f"unknown upscaler {name!r}; this worker has: {known}{latent}")


ModelRunner = Callable[[Path, Any], Any]  # (model file, PIL image) -> the model's upscale of it


def _apply_once(entry: UpscalerEntry, image: Any, scale: float, run_model: ModelRunner | None) -> Any:
    """One application of the upscaler (A1111's do_upscale): PIL by `scale`, a model by its own."""
    from PIL import Image

    if entry.kind == "model":
        if run_model is None or entry.path is None:
            raise InvalidRequest("upscaler", f"{entry.name}: model upscalers need the job thread")  # a bug if seen
        return run_model(entry.path, image)
    size = (int(image.width * scale), int(image.height * scale))
    resample = Image.Resampling.NEAREST if entry.kind == "nearest" else Image.Resampling.LANCZOS
    return image.resize(size, resample=resample)


def upscale_by(entry: UpscalerEntry, image: Any, scale: float, run_model: ModelRunner | None = None) -> Any:
    """`image` upscaled by `scale` as A1111's Upscaler.upscale does it: the target is the scaled size
    floored to a multiple of 8; the upscaler is applied (up to 3 times) until the image is at least
    that large, then Lanczos gives the exact size. "None" returns the image unchanged."""
    from PIL import Image

    if entry.kind == "none":
        return image
    dest_w, dest_h = int(image.width * scale // 8 * 8), int(image.height * scale // 8 * 8)
    for attempt in range(_MAX_PASSES):
        if image.width >= dest_w and image.height >= dest_h and (attempt > 0 or scale != 1):
            break
        before = image.size
        image = _apply_once(entry, image, scale, run_model)
        if image.size == before:
            break
    if image.size != (dest_w, dest_h):
        image = image.resize((dest_w, dest_h), resample=Image.Resampling.LANCZOS)
    return image


def upscale_to(entry: UpscalerEntry, image: Any, width: int, height: int, run_model: ModelRunner | None = None) -> Any:
    """`image` at exactly `width` x `height` (A1111's resize_image mode 0 with an upscaler, as hires
    fix uses it): upscaled by the larger ratio when it grows, then Lanczos to the exact size."""
    from PIL import Image

    if entry.kind != "none" and image.mode != "L":
        scale = max(width / image.width, height / image.height)
        if scale > 1.0:
            image = upscale_by(entry, image, scale, run_model)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
    return image


def upscale_latents(latents: Any, mode_name: str, height: int, width: int) -> Any:
    """Hires fix's latent upscale: torch interpolation of the (N, 4, h/8, w/8) latents to the latent
    size of `width` x `height`, with the interpolate mode and antialiasing `mode_name` stands for."""
    import torch

    mode, antialias = LATENT_UPSCALE_MODES[mode_name]
    size = (height // 8, width // 8)
    return torch.nn.functional.interpolate(latents, size=size, mode=mode, antialias=antialias)


def _positions(size: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one side: every `stride`, the last one flush with the far edge."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(length: int, overlap: int, head: bool, tail: bool) -> Any:
    """1-D blend weights of one tile: 1 inside, rising/falling linearly over `overlap` at a side that
    meets another tile (head: the start, tail: the end); never 0, so every pixel has weight."""
    import torch

    weights = torch.ones(length)
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    span = min(overlap, length)
    if head and span:
        weights[:span] = torch.minimum(weights[:span], ramp[:span])
    if tail and span:
        weights[-span:] = torch.minimum(weights[-span:], ramp[:span].flip(0))
    return weights


def tiled(model: Callable[[Any], Any], image: Any, scale: int, tile: int = TILE, overlap: int = TILE_OVERLAP) -> Any:
    """`model` applied to a (N, C, H, W) tensor in `tile`-sized pieces overlapping by `overlap`,
    stitched at `scale` x the size with linear blending over the overlaps. An image that fits in one
    tile goes through whole; `tile` <= 0 turns tiling off (as A1111's ESRGAN_tile = 0)."""
    import torch

    n, _c, h, w = image.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return model(image)
    stride = max(1, tile - overlap)
    ys, xs = _positions(h, tile, stride), _positions(w, tile, stride)
    out: Any = None
    weight = torch.zeros((1, 1, h * scale, w * scale), device=image.device)
    for y in ys:
        for x in xs:
            piece = model(image[:, :, y:y + tile, x:x + tile])
            if out is None:
                out = torch.zeros((n, piece.shape[1], h * scale, w * scale), dtype=piece.dtype, device=piece.device)
            ph, pw = piece.shape[-2:]
            mask = (_ramp(ph, overlap * scale, y > 0, y + tile < h)[:, None]
                    * _ramp(pw, overlap * scale, x > 0, x + tile < w)[None, :]).to(piece.device)
            out[:, :, y * scale:y * scale + ph, x * scale:x * scale + pw] += piece * mask.to(piece.dtype)
            weight[:, :, y * scale:y * scale + ph, x * scale:x * scale + pw] += mask
    return out / weight.to(out.dtype)


class ModelUpscalers:
    """Model upscalers loaded with spandrel on `device`; the last one used stays loaded.

    `run` is called on the worker's job thread only (it may use the GPU, so never beside a job)."""

    def __init__(self, device: str) -> None:
        self.device = device if device.startswith("cuda") or device == "cpu" else "cpu"
        self._loaded: tuple[Path, float, Any] | None = None  # (file, mtime, spandrel descriptor)
        self._lock = threading.Lock()

    def _model(self, path: Path) -> Any:
        stamp = path.stat().st_mtime
        if self._loaded is not None and self._loaded[:2] == (path, stamp):
            return self._loaded[2]
        from spandrel import ImageModelDescriptor, ModelLoader

        self._loaded = None  # the previous model's memory goes before the next loads
        try:
            descriptor = ModelLoader(device=self.device).load_from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - any unreadable or unknown file is the request's 422
            raise InvalidRequest("upscaler", f"{path.name} is not a model spandrel can load: {exc}") from None
        if not isinstance(descriptor, ImageModelDescriptor):
            raise InvalidRequest("upscaler", f"{path.name} is not an image upscaler ({descriptor.architecture.name})")
        descriptor.eval()
        if self.device.startswith("cuda") and descriptor.supports_half:
            descriptor.half()
        self._loaded = (path, stamp, descriptor)
        return descriptor

    def run(self, path: Path, image: Any) -> Any:
        """`image` (PIL) through the model in `path`, at the model's own scale, tiled."""
        import numpy as np
        import torch
        from PIL import Image

        with self._lock, torch.inference_mode():
            model = self._model(path)
            dtype = torch.float16 if self.device.startswith("cuda") and model.supports_half else torch.float32
            array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
            tensor = torch.from_numpy(array).permute(2, 0, 1)[None].to(self.device, dtype)
            result = tiled(model, tensor, int(model.scale)).float().clamp(0, 1)
            pixels = (result[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
        return Image.fromarray(pixels, "RGB")
