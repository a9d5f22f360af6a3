"""The exact fast path: the same images as the plain modules, faster (issue 16).

What it does to the loaded checkpoints (`FastPath.install`, once, at start-up):

* channels_last weights for every UNet and VAE (convolutions' fast layout on GPUs);
* fused QKV projections (diffusers' `fuse_qkv_projections`): one matmul instead of three. Not with
  `--lora-dir`: LoRAs hook `to_q`/`to_k`/`to_v`, which a fused attention no longer calls;
* on CUDA only, the fastest scaled-dot-product-attention backends first (cuDNN, Flash, memory
  efficient, then math) around every UNet call;
* `torch.compile` of the base UNet(s), the refiner UNet and the VAE decode, with *static* shapes:
  each is wrapped in a `ShapeDispatch`, which sends a call to the compiled function only when the
  call's shapes were compiled during a warm-up (`FastPath.warming`); any other call runs the eager
  module. A request never compiles: the compiled call runs under dynamo's `eager_on_recompile`
  stance too, so even a guard that fails (a LoRA's injected layers, an unusual argument) runs
  eager instead of compiling. Automatic dynamic shapes are off and the recompile limits raised so
  that every whitelisted shape keeps its own static graph.

The compiled shapes are a whitelist (`--compile-shapes`, `--compile-batch-sizes`): on CUDA the pool's
default size first, then 1024x1024 and SDXL's aspect sizes, at batch 1; on the CPU only the default
size. The service warms them on the job thread (CUDA graphs are per thread), the first before the
worker turns ready, the rest after, and /readyz lists them as they warm.

Compiled artifacts (`torch.compiler.save_cache_artifacts`) are written after each warmed shape to
`<cache dir>/<gpu>-torch<version>-<hash of the shape list and compile options>/artifacts.bin` and
loaded at the next start, before anything compiles: a restart re-uses the inductor FX-graph and
autotune results instead of recompiling from scratch.

Decisions are the pure functions at the top (`fast_path_on`, `compile_mode`, `whitelist`,
`cache_key`, `call_key`); the rest is a thin shell over torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Shape", "FastPath", "ShapeDispatch", "fast_path_on", "compile_mode", "whitelist", "parse_sizes",
           "parse_batch_sizes", "cache_key", "call_key", "COMPILE_MODES", "SDXL_SIZES"]

log = logging.getLogger(__name__)

# torch.compile's modes; "auto" picks per device (`compile_mode`).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# SDXL's trained sizes people ask for most: square, then the common aspect pairs.
SDXL_SIZES = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344))
_ARTIFACTS = "artifacts.bin"


@dataclass(frozen=True, order=True)
class Shape:
    """One compiled request shape: image width and height, images per batch."""

    width: int
    height: int
    batch: int = 1

    def __str__(self) -> str:
        return f"{self.width}x{self.height}x{self.batch}"


# -- decisions (pure) --------------------------------------------------------------------------------
def fast_path_on(setting: bool | None, device: str) -> bool:
    """--compile / --no-compile; unset: on with CUDA, off on the CPU (compiling there costs minutes)."""
    return setting if setting is not None else device.startswith("cuda")


def compile_mode(setting: str, device: str) -> str:
    """"auto": max-autotune on CUDA (Triton autotuning and CUDA graphs), inductor's default on the CPU
    (max-autotune there benchmarks C++ GEMM templates for minutes for little gain)."""
    if setting != "auto":
        return setting
    return "max-autotune" if device.startswith("cuda") else "default"


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """"1024x1024,832x1216" -> ((1024, 1024), (832, 1216)); "auto" -> (). Sizes are multiples of 8."""
    text = text.strip().lower()
    if text in {"", "auto"}:
        return ()
    sizes = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", part)
        if match is None:
            raise ValueError(f"sizes are WIDTHxHEIGHT separated by commas, got {part.strip()!r}")
        width, height = int(match[1]), int(match[2])
        if width < 8 or height < 8 or width % 8 or height % 8:
            raise ValueError(f"{width}x{height}: width and height must be multiples of 8")
        sizes.append((width, height))
    return tuple(dict.fromkeys(sizes))


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    """"1,2" -> (1, 2): batch sizes of 1 or more."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"batch sizes are integers separated by commas, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise ValueError(f"batch sizes must be 1 or more, got {text!r}")
    return tuple(dict.fromkeys(sizes))


def whitelist(sizes: str, batch_sizes: str, *, device: str, default_size: tuple[int, int]) -> tuple[Shape, ...]:
    """The shapes to compile, in warm-up order (the first is warm before the worker is ready).

    "auto" sizes: on CUDA the pool's default size, then SDXL's common sizes; on the CPU only the
    default size (each compiled shape costs a compile)."""
    chosen = parse_sizes(sizes)
    if not chosen:
        chosen = (default_size, *SDXL_SIZES) if device.startswith("cuda") else (default_size,)
    batches = parse_batch_sizes(batch_sizes)
    return tuple(dict.fromkeys(Shape(w, h, b) for b in batches for w, h in chosen))


def cache_key(gpu: str, torch_version: str, shapes: tuple[Shape, ...], options: dict[str, Any]) -> str:
    """The cache folder's name: artifacts compiled for one GPU model, torch and shape list."""
    digest = hashlib.sha256(json.dumps([[str(s) for s in shapes], options], sort_keys=True).encode()).hexdigest()
    clean = re.sub(r"[^a-z0-9.]+", "-", f"{gpu}-torch{torch_version}".lower()).strip("-")
    return f"{clean}-{digest[:12]}"


def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A call's signature for dispatch: tensors by shape and dtype, containers by their content,
    other values by value (floats by type: a timestep given as a float does not make a new shape)."""
    def key(value: Any) -> Any:
        shape = getattr(value, "shape", None)
        if shape is not None and hasattr(value, "dtype"):
            return ("tensor", tuple(shape), str(value.dtype))
        if isinstance(value, dict):
            return ("dict", tuple(sorted((k, key(v)) for k, v in value.items())))
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, tuple(key(v) for v in value))
        if isinstance(value, float):
            return "float"
        if value is None or isinstance(value, (bool, int, str)):
            return value
        return type(value).__name__

    return (key(args), key(kwargs))


# -- the shell over torch ------------------------------------------------------------------------------
class ShapeDispatch:
    """Stands in for one module's method (`unet.forward`, `vae.decode`): compiled for warmed call
    shapes, eager for every other. `fast.compiling` says whether this call may compile (warm-up)."""

    def __init__(self, fast: FastPath, name: str, eager: Callable[..., Any], compiled: Callable[..., Any],
                 around: Callable[[], Any]) -> None:
        self.fast, self.name, self.eager, self.compiled, self.around = fast, name, eager, compiled, around
        self.warm: set[Any] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        fast = self.fast
        if self.name == "unet.forward":
            args, kwargs = _float32_timestep(args, kwargs)
        key = call_key(args, kwargs)
        with self.around():
            if fast.compiling and not fast.forced_eager:
                out = self.compiled(*args, **kwargs)
                self.warm.add(key)  # compiled, for the requests that follow
                fast.note("compiled")
                return out
            if key in self.warm and not fast.forced_eager:
                fast.note("compiled")
                with torch.compiler.set_stance("eager_on_recompile"):  # never compile in a request
                    return self.compiled(*args, **kwargs)
            fast.note("eager")
            return self.eager(*args, **kwargs)


class FastPath:
    """The fast path over a worker's loaded checkpoints (see the module docstring)."""

    def __init__(self, *, device: str, shapes: tuple[Shape, ...], mode: str, backend: str, fuse_qkv: bool,
                 cache_dir: Path, gpu: str) -> None:
        import torch

        self.device, self.shapes, self.mode, self.backend, self.fuse_qkv = device, shapes, mode, backend, fuse_qkv
        options = {"mode": mode, "backend": backend, "fuse_qkv": fuse_qkv}
        self.cache_dir = cache_dir / cache_key(gpu, torch.__version__, shapes, options)
        self.dispatchers: list[ShapeDispatch] = []
        self.warm: list[Shape] = []  # warmed, in order
        self.warmed_on: dict[str, str] = {}  # shape -> the thread that compiled it (the job thread)
        self.job_thread = ""  # the thread the last job ran on
        self.compiling = False  # True inside `warming` (on the job thread)
        self.forced_eager = False
        self.cache_loaded = False
        self._paths: set[str] = set()
        self._lock = threading.Lock()

    # -- start-up ---------------------------------------------------------------------------------
    def install(self, pipelines: list[Any]) -> None:
        """channels_last, fused QKV and compiled dispatch on every UNet and VAE of `pipelines` (a
        module shared by several pipelines, like the refiner's VAE, is done once)."""
        import torch

        dynamo = torch._dynamo.config
        dynamo.automatic_dynamic_shapes = False
        # Base and refiner UNets share one code object (UNet2DConditionModel.forward): one static
        # graph per shape and module must fit under the limits.
        limit = 8 * (len(self.shapes) + 1) * max(1, len(pipelines))
        dynamo.recompile_limit = max(dynamo.recompile_limit, limit)
        dynamo.accumulated_recompile_limit = max(dynamo.accumulated_recompile_limit, 4 * limit)
        self._load_cache()
        done: set[int] = set()
        for pipeline in pipelines:
            for name in ("unet", "vae"):
                module = getattr(pipeline, name, None)
                if module is None or id(module) in done:
                    continue
                done.add(id(module))
                module.to(memory_format=torch.channels_last)
                if self.fuse_qkv:
                    module.fuse_qkv_projections()
                method = "forward" if name == "unet" else "decode"
                self._dispatch(module, method, f"{name}.{method}", attention=name == "unet")

    def _dispatch(self, module: Any, method: str, name: str, *, attention: bool) -> None:
        import torch

        eager = getattr(module, method)  # the bound method; compiled and eager share the weights
        compiled = torch.compile(eager, mode=self.mode if self.backend == "inductor" else None,
                                 backend=self.backend, dynamic=False)
        around = _fastest_attention if attention and self.device.startswith("cuda") else nullcontext
        dispatch = ShapeDispatch(self, name, eager, compiled, around)
        setattr(module, method, dispatch)  # instance attribute: nn.Module.__call__ finds it
        self.dispatchers.append(dispatch)

    # -- warm-up and requests, on the job thread --------------------------------------------------------
    @contextmanager
    def warming(self, shape: Shape) -> Iterator[None]:
        """Inside: calls compile for their shapes (a warm-up job at `shape`); after: the artifacts saved."""
        started = time.perf_counter()
        self.compiling = True
        try:
            yield
        finally:
            self.compiling = False
        self.warm.append(shape)
        self.warmed_on[str(shape)] = threading.current_thread().name
        log.info("compiled %s in %.1fs", shape, time.perf_counter() - started)
        self._save_cache()

    @contextmanager
    def eager(self) -> Iterator[None]:
        """Inside: every call eager (a job with LoRAs: their layers are not in the compiled graphs)."""
        self.forced_eager = True
        try:
            yield
        finally:
            self.forced_eager = False

    @contextmanager
    def job(self) -> Iterator[set[str]]:
        """Around one job: the set it yields fills with the paths its calls took ("compiled", "eager")."""
        paths: set[str] = set()
        self._paths = paths
        self.job_thread = threading.current_thread().name
        yield paths

    def note(self, path: str) -> None:
        self._paths.add(path)

    @property
    def pending(self) -> list[Shape]:
        return [s for s in self.shapes if s not in self.warm]

    # -- the compile cache --------------------------------------------------------------------------------
    def _load_cache(self) -> None:
        import torch

        file = self.cache_dir / _ARTIFACTS
        try:
            data = file.read_bytes()
        except OSError:
            log.info("no compile cache at %s: compiling from scratch", file)
            return
        try:
            torch.compiler.load_cache_artifacts(data)
        except Exception as exc:  # noqa: BLE001 - a stale or broken cache only costs a recompile
            log.warning("compile cache %s not loaded: %s", file, exc)
            return
        self.cache_loaded = True
        log.info("compile cache loaded from %s (%d bytes)", file, len(data))

    def _save_cache(self) -> None:
        import torch

        saved = torch.compiler.save_cache_artifacts()
        if saved is None:
            return  # nothing compiled that the cache keeps (backends other than inductor)
        file = self.cache_dir / _ARTIFACTS
        with self._lock:
            try:
                self.cache_dir.mkdir(parents=True, exist_ok=True)
                tmp = file.with_suffix(".tmp")
                tmp.write_bytes(saved[0])
                tmp.replace(file)
            except OSError as exc:
                log.warning("could not write the compile cache %s: %s", file, exc)


def _float32_timestep(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The UNet's timestep as float32: samplers hand it over as float32, float64 or int64, which
    would be three graphs; the UNet's time embedding casts it with `.float()` first, so this is exact."""
    import torch

    def cast(value: Any) -> Any:
        is_time = isinstance(value, torch.Tensor) and value.dim() <= 1 and value.dtype != torch.float32
        return value.float() if is_time else value

    if "timestep" in kwargs:
        return args, {**kwargs, "timestep": cast(kwargs["timestep"])}
    if len(args) > 1:
        return (args[0], cast(args[1]), *args[2:]), kwargs
    return args, kwargs


@contextmanager
def _fastest_attention() -> Iterator[None]:
    """CUDA: cuDNN attention first, then Flash, memory-efficient and math (each where it applies)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
             SDPBackend.MATH]
    with sdpa_kernel(order, set_priority=True):
        yield
