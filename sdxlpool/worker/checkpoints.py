"""Loading SDXL checkpoints and naming them the way A1111 does.

A checkpoint is a diffusers folder or a single `.safetensors` file, either an SDXL *base*
(text-to-image) or a *refiner* (the img2img expert that finishes the last denoising steps). The
worker loads every checkpoint it is given once, at start-up, onto one device; requests then pick one
by A1111 title or name (`sd_model_checkpoint`, `refiner_checkpoint`). Refiners reuse the base's
text_encoder_2 and VAE, as SDXL 1.0 was trained, which saves about 1.5 GB of GPU memory.

Hashes follow A1111: `sha256` of the file, the first 10 hex digits as the short hash in titles and
infotexts. For a diffusers folder we hash its weight and config files in a fixed order. Hashes are
cached by (path, size, mtime) so a restart does not re-read gigabytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sdxlpool.errors import CheckpointError, NotFound

__all__ = ["Checkpoint", "CheckpointSet", "load_checkpoints", "choose_device", "probe_kind", "quiet_library_noise"]

log = logging.getLogger(__name__)
Kind = Literal["base", "refiner"]


@dataclass
class Checkpoint:
    model_name: str  # "sd_xl_base_1.0", or "tiny/base" for a folder with a generic name
    path: Path
    kind: Kind
    sha256: str
    pipeline: Any  # StableDiffusionXLPipeline | StableDiffusionXLImg2ImgPipeline
    loras: Any = None  # a base's worker.loras.LoraAdapters when the engine applies LoRAs; else None

    @property
    def short_hash(self) -> str:
        return self.sha256[:10]

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def title(self) -> str:
        suffix = self.path.suffix if self.path.is_file() else ""
        return f"{self.model_name}{suffix} [{self.short_hash}]"

    def as_a1111(self) -> dict[str, Any]:
        """One entry of GET /sdapi/v1/sd-models."""
        return {
            "title": self.title,
            "model_name": self.model_name,
            "hash": self.short_hash,
            "sha256": self.sha256,
            "filename": str(self.path),
            "config": None,
            "sdxlpool_kind": self.kind,
        }

    def answers_to(self, name: str) -> bool:
        """A1111 accepts a checkpoint by title, name, file name or short hash."""
        name = name.strip()
        return name in {self.title, self.model_name, self.filename, self.short_hash, str(self.path)}


class CheckpointSet:
    """The loaded checkpoints plus which base is current (A1111's `sd_model_checkpoint`)."""

    def __init__(self, checkpoints: list[Checkpoint]) -> None:
        bases = [c for c in checkpoints if c.kind == "base"]
        if not bases:
            raise CheckpointError("no SDXL base checkpoint given: a refiner alone cannot generate images")
        self.all = checkpoints
        self.current: Checkpoint = bases[0]

    @property
    def refiners(self) -> list[Checkpoint]:
        return [c for c in self.all if c.kind == "refiner"]

    def find(self, name: str, *, kind: Kind, field: str) -> Checkpoint:
        for checkpoint in self.all:
            if checkpoint.answers_to(name):
                if checkpoint.kind != kind:
                    raise NotFound(f"{field}: {name!r} is a {checkpoint.kind} checkpoint, not a {kind}")
                return checkpoint
        loaded = ", ".join(c.title for c in self.all if c.kind == kind) or "none"
        raise NotFound(f"{field}: checkpoint {name!r} not found (loaded {kind} checkpoints: {loaded})")


def quiet_library_noise() -> None:
    """Silence library chatter that says nothing to a worker's operator.

    Per-file progress bars, and transformers' note that torchvision is missing (we use no image
    processor: SDXL's CLIP image encoders belong to IP-Adapter, which the worker does not load).
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    logging.getLogger("transformers.utils.import_utils").addFilter(
        lambda record: "requires torchvision" not in record.getMessage()
    )
    # torchsde's Brownian interval warns about float rounding at its ends on every SDE step.
    warnings.filterwarnings("ignore", message="Should have t", category=UserWarning, module="torchsde")


def choose_device(requested: str) -> str:
    """'auto' means CUDA when a GPU is visible, else CPU; asking for CUDA without one is an error."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise CheckpointError(f"--device {requested}: no CUDA device is visible to this process")
    return requested


def torch_dtype(device: str, dtype: str) -> Any:
    """fp16 on GPUs by default (SDXL's VAE is upcast for decoding by its config); fp32 on CPU."""
    import torch

    if dtype == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]


def load_checkpoints(
    models: list[Path], refiner: Path | None, *, device: str, dtype: Any, cache_dir: Path
) -> CheckpointSet:
    """Load every base in `models` and the optional refiner onto `device`."""
    quiet_library_noise()
    loaded: list[Checkpoint] = []
    for path in models:
        loaded.append(_load_one(path, expected="base", device=device, dtype=dtype, cache_dir=cache_dir))
    if refiner is not None:
        shared = loaded[0].pipeline
        loaded.append(
            _load_one(refiner, expected="refiner", device=device, dtype=dtype, cache_dir=cache_dir,
                      text_encoder_2=shared.text_encoder_2, vae=shared.vae)
        )
    return CheckpointSet(loaded)


def probe_kind(path: Path) -> Kind:
    """Base or refiner, from metadata only (model_index.json or the safetensors header)."""
    path = path.expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    return _folder_kind(path) if path.is_dir() else _file_kind(path)


def _load_one(path: Path, *, expected: Kind, device: str, dtype: Any, cache_dir: Path, **shared: Any) -> Checkpoint:
    path = path.expanduser()
    kind = probe_kind(path)
    if kind != expected:
        flag = "--model" if expected == "base" else "--refiner"
        raise CheckpointError(f"{flag} {path}: this is an SDXL {kind} checkpoint, not a {expected}")
    log.info("loading %s checkpoint %s", kind, path)
    try:
        with warnings.catch_warnings():
            # diffusers 0.4x renames torch_dtype to dtype; older releases we support know only torch_dtype.
            warnings.filterwarnings("ignore", message=".*torch_dtype.*", category=FutureWarning)
            pipeline = _load_pipeline(path, kind, dtype, shared)
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: cannot load as an SDXL {kind}: {exc}") from exc
    pipeline.set_progress_bar_config(disable=True)
    pipeline.to(device)
    _keep_vae_in_fp32(pipeline)
    return Checkpoint(_model_name(path), path, kind, _sha256(path, cache_dir), pipeline)


def _keep_vae_in_fp32(pipeline: Any) -> None:
    """SDXL's VAE overflows in fp16 (its config says `force_upcast`): keep it in fp32 for good.

    diffusers instead casts it to fp32 and back around every decode, which costs time and logs a
    warning per image; the fp32 copy costs about 170 MB more than fp16. Only the decoder is used here.
    """
    import torch

    vae = pipeline.vae
    if vae is not None and vae.dtype == torch.float16 and getattr(vae.config, "force_upcast", False):
        vae.to(dtype=torch.float32)


def _load_pipeline(path: Path, kind: Kind, dtype: Any, shared: dict[str, Any]) -> Any:
    if path.is_file():
        from sdxlpool.worker.single_file import load_single_file

        return load_single_file(path, kind=kind, torch_dtype=dtype, **shared)
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    cls = StableDiffusionXLPipeline if kind == "base" else StableDiffusionXLImg2ImgPipeline
    return cls.from_pretrained(path, torch_dtype=dtype, local_files_only=True, **shared)


def _folder_kind(path: Path) -> Kind:
    index = path / "model_index.json"
    if not index.is_file():
        raise CheckpointError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
    try:
        meta = json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index}: unreadable: {exc}") from exc
    cls = meta.get("_class_name", "")
    if "StableDiffusionXL" not in cls:
        raise CheckpointError(f"{path}: a {cls or 'unknown'} pipeline, not Stable Diffusion XL")
    has_text_encoder = (meta.get("text_encoder") or [None])[0] is not None
    return "base" if has_text_encoder else "refiner"


def _file_kind(path: Path) -> Kind:
    from sdxlpool.worker.single_file import detect_architecture

    kind, _size = detect_architecture(path)
    return kind


def _model_name(path: Path) -> str:
    name = path.stem if path.is_file() else path.name
    if path.is_dir() and name in {"base", "refiner"}:
        return f"{path.parent.name}/{name}"  # tiny-model DIR/base -> "DIR/base", as A1111 names subfolders
    return name


def _sha256(path: Path, cache_dir: Path) -> str:
    files = [path] if path.is_file() else sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix in {".safetensors", ".bin", ".json", ".txt"}
    )
    stamp = [(str(p.relative_to(path.parent)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    cache_file = cache_dir / "hashes.json"
    key = str(path.resolve())
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, json.JSONDecodeError):
        cache = {}
    entry = cache.get(key)
    if entry and entry.get("stamp") == json.loads(json.dumps(stamp)):
        return entry["sha256"]
    digest = hashlib.sha256()
    for file in files:
        if len(files) > 1:
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as handle:
            while chunk := handle.read(8 << 20):
                digest.update(chunk)
    cache[key] = {"stamp": stamp, "sha256": digest.hexdigest()}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        tmp.replace(cache_file)
    except OSError:
        log.warning("could not write the hash cache %s", cache_file)  # a cache, not a requirement
    return digest.hexdigest()
