"""How an SDXLPool spec becomes the command lines of its workers and its gateway: the one home of
that configuration.

Pure: functions of the spec, returning arguments after ``sdxlpool``. Three places run a pool and all
call these, so a pool behaves the same wherever it runs:

    the operator (Kubernetes)    sdxlpool.operator.desired.workers / .gateway   container args
    ``sdxlpool sdl`` (Akash)     sdxlpool.akash.sdl                             service commands
    ``sdxlpool up`` (this host)  sdxlpool.local.plan                            process argv

What each spec field becomes:

    spec.limits, spec.defaults  -> the same ``--max-*`` / ``--default-*`` flags for the workers AND the
                                   gateway (:data:`GENERATION_FLAGS`): the gateway judges and sizes a
                                   request as the workers will, so a request that leaves out its size
                                   gets the pool's default size everywhere
    spec.gpus[i]                -> a worker's ``--gpu-model``, ``--provider``, ``--location``; its entry in
                                   the gateway's backends file (:func:`backend_entry`)
    spec.gpus[i].fastMode       -> that GPU model's workers' ``--fast-mode``, real or simulated
                                   (:func:`fast_mode_args`; only when not ``off``, the exact default)
    spec.model                  -> ``--model`` / ``--refiner`` paths under the weights folder, and the
                                   ``hf download`` commands that fill it (:func:`hf_download_command`)
    spec.gateway.rateLimit      -> the gateway's ``--rate-limit`` and ``--rate-limit-burst``
    spec.gpus[*] slugs          -> the gateway's ``--pool-gpus`` (models a request may wait for: scale from zero)
    spec.autoscaling            -> the gateway's ``--latency-target`` (p95 seconds), when enabled
    spec.loras, .embeddings,    -> ``--lora-dir`` / ``--embeddings-dir`` / ``--vae-dir``, one folder per kind
      .vaes, .styles               (:func:`fine_tune_dir`, only for kinds the spec lists), and ``--styles``
                                   naming the one styles.csv inside its folder (:func:`fine_tune_paths`):
                                   Hugging Face files are downloaded into a folder's ``huggingface/``
                                   part (:func:`hf_file_download_command`), volume files appear under
                                   its ``volume/<claim>/`` part (:func:`volume_file_path`); the worker
                                   scans its folders recursively and names a file after its stem, as
                                   A1111 does

Every value is a flag, none an environment variable: what a process was told is visible in its
command line (``kubectl describe``, ``ps``), and a flag the program does not know fails loudly at
start instead of being ignored. This module imports nothing from pydantic at run time, so the
command line can build its parsers from :data:`GENERATION_FLAGS` without loading the spec models.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdxlpool.api.fast_modes import FAST_MODE_OFF

if TYPE_CHECKING:
    from collections.abc import Mapping

    from sdxlpool.api.spec import DefaultsSpec, FineTuneSource, GpuEntry, LimitsSpec, SDXLPoolSpec

__all__ = [
    "FINE_TUNES_DIR",
    "FINE_TUNE_KINDS",
    "GENERATION_FLAGS",
    "HF_INCLUDE",
    "MODELS_DIR",
    "WORKER_DRAIN_SECONDS",
    "WORKER_STOP_GRACE_SECONDS",
    "FineTuneKind",
    "GenerationFlag",
    "backend_entry",
    "fast_mode_args",
    "fine_tune_dir",
    "fine_tune_label",
    "fine_tune_paths",
    "gateway_args",
    "generation_args",
    "generation_values",
    "hf_download_command",
    "hf_file_download_command",
    "hf_file_local_dir",
    "hf_local_dir",
    "model_paths",
    "pod_worker_args",
    "volume_claim",
    "volume_file_path",
    "worker_args",
]


WORKER_DRAIN_SECONDS = 300.0
"""How long a worker told to stop (SIGTERM: a scale-down, a rollout, Ctrl-C) keeps finishing the jobs
it holds, running and queued, before it gives up on them (``--drain-seconds``' default)."""

WORKER_STOP_GRACE_SECONDS = int(WORKER_DRAIN_SECONDS) + 30
"""A worker pod's ``terminationGracePeriodSeconds``: the drain, plus time to answer and exit, before
the kubelet's SIGKILL."""


@dataclass(frozen=True)
class GenerationFlag:
    """One limit or default that workers and gateways share: a settings field and its flag."""

    field: str  # the field of WorkerSettings and GatewaySettings (env var: prefix + FIELD)
    kind: type
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


GENERATION_FLAGS: tuple[GenerationFlag, ...] = (
    GenerationFlag("max_steps", int, "largest steps value accepted"),
    GenerationFlag("max_pixels", int, "largest width x height accepted"),
    GenerationFlag("max_batch", int, "most images per request (batch_size x n_iter)"),
    GenerationFlag("max_prompt_chars", int, "longest prompt accepted"),
    GenerationFlag("default_sampler", str, "sampler when a request names none"),
    GenerationFlag("default_steps", int, "steps when a request gives none"),
    GenerationFlag("default_cfg_scale", float, "CFG scale when a request gives none"),
    GenerationFlag("default_width", int, "width when a request gives none"),
    GenerationFlag("default_height", int, "height when a request gives none"),
    GenerationFlag("default_refiner_switch_at", float,
                   "fraction of the steps after which the refiner takes over, when a request gives none"),
)
"""The limits and defaults of a pool, in the order the flags are written."""


def generation_values(limits: LimitsSpec, defaults: DefaultsSpec) -> dict[str, Any]:
    """The pool's limits and defaults by settings field (the keys of :data:`GENERATION_FLAGS`)."""
    return {
        "max_steps": limits.max_steps,
        "max_pixels": limits.max_pixels,
        "max_batch": limits.max_batch,
        "max_prompt_chars": limits.max_prompt_chars,
        "default_sampler": defaults.sampler,
        "default_steps": defaults.steps,
        "default_cfg_scale": defaults.cfg_scale,
        "default_width": defaults.width,
        "default_height": defaults.height,
        "default_refiner_switch_at": defaults.refiner_switch_at,
    }


def generation_args(limits: LimitsSpec, defaults: DefaultsSpec) -> list[str]:
    """``--max-steps 60 ... --default-refiner-switch-at 0.8``: what a worker and a gateway are told."""
    values = generation_values(limits, defaults)
    return [arg for flag in GENERATION_FLAGS for arg in (flag.flag, str(values[flag.field]))]


# --- weights -------------------------------------------------------------------------------------

MODELS_DIR = "/models"
"""Where a pod or an Akash service keeps the weights (a PVC, or the cache `hf download` fills)."""

# What `hf download` fetches of a diffusers SDXL repo: configs, tokenizers and the default-precision
# safetensors the worker loads. Left out: fp16/variant copies, ONNX/OpenVINO exports, .bin
# pickles and the single-file checkpoints at the top of Stability's repos (about 4x the download).
HF_INCLUDE = (
    "model_index.json",
    "*/*.json",
    "*/*.txt",
    "*/model.safetensors",
    "*/model-*-of-*.safetensors",
    "*/diffusion_pytorch_model.safetensors",
    "*/diffusion_pytorch_model-*-of-*.safetensors",
)


def hf_local_dir(repo: str, revision: str | None, models_dir: str = MODELS_DIR) -> str:
    """Where a repo is downloaded in the weights folder: ``/models/huggingface/<rev>/<repo>``.

    The revision is part of the path so pools sharing one cache PVC at different revisions do
    not overwrite each other; the repo comes last so the worker names the model after it.
    """
    rev = (revision or "main").replace("/", "_")
    return posixpath.join(models_dir, "huggingface", rev, repo)


def hf_download_command(repo: str, revision: str | None, models_dir: str = MODELS_DIR) -> list[str]:
    """``hf download`` of one repo into `hf_local_dir`, only the files the worker loads."""
    command = ["hf", "download", repo, "--local-dir", hf_local_dir(repo, revision, models_dir)]
    if revision:
        command += ["--revision", revision]
    for pattern in HF_INCLUDE:
        command += ["--include", pattern]
    return command


def _volume_path(path: str, models_dir: str) -> str:
    """A path inside the PVC, as mounted at /models (leading slashes and ``..`` cannot leave it)."""
    return posixpath.normpath(posixpath.join(models_dir, posixpath.normpath("/" + path).lstrip("/")))


def model_paths(spec: SDXLPoolSpec, models_dir: str = MODELS_DIR) -> tuple[str, str | None]:
    """(base, refiner or None): where a worker finds the spec's weights under `models_dir`."""
    volume, hub = spec.model.volume, spec.model.hugging_face
    if volume is not None:
        refiner = _volume_path(volume.refiner_path, models_dir) if volume.refiner_path else None
        return _volume_path(volume.base_path, models_dir), refiner
    assert hub is not None  # ModelSource guarantees exactly one
    refiner = hf_local_dir(hub.refiner_repo, hub.revision, models_dir) if hub.refiner_repo else None
    return hf_local_dir(hub.repo, hub.revision, models_dir), refiner


# --- fine-tunes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FineTuneKind:
    """One kind of fine-tune file: its spec field, the worker flag naming its folder (or, for a
    `file` kind, the file itself), the folder."""

    field: str  # SDXLPoolSpec field (a list of FineTuneSource, or one)
    flag: str
    folder: str
    file: bool = False


FINE_TUNE_KINDS: tuple[FineTuneKind, ...] = (
    FineTuneKind("loras", "--lora-dir", "loras"),
    FineTuneKind("embeddings", "--embeddings-dir", "embeddings"),
    FineTuneKind("vaes", "--vae-dir", "vae"),
    FineTuneKind("styles", "--styles", "styles", file=True),
)
"""The spec's fine-tune fields (``sdxlpool.api.spec.FINE_TUNE_FIELDS``), in the order the flags are written."""

FINE_TUNES_DIR = "/fine-tunes"
"""Where a pod or an Akash service keeps the fine-tune folders (``/fine-tunes/loras``, ...)."""


def fine_tune_dir(kind: FineTuneKind, root: str = FINE_TUNES_DIR) -> str:
    """The folder a worker is told for `kind` (``--lora-dir /fine-tunes/loras``)."""
    return posixpath.join(root, kind.folder)


def fine_tune_label(kind: FineTuneKind, index: int) -> str:
    """How an error names one source: ``loras[2]``, or ``styles`` (a field of one file)."""
    return kind.field if kind.file else f"{kind.field}[{index}]"


def fine_tune_paths(spec: SDXLPoolSpec, root: str = FINE_TUNES_DIR) -> dict[str, str]:
    """Spec field -> what its flag names, for the kinds `spec` lists files of (the others get no
    flag): the kind's folder, or for a `file` kind (styles) the one file in it."""
    paths = {}
    for kind in FINE_TUNE_KINDS:
        sources = spec.fine_tunes(kind.field)
        if not sources:
            continue
        if not kind.file:
            paths[kind.field] = fine_tune_dir(kind, root)
        elif (hub := sources[0].hugging_face) is not None:
            paths[kind.field] = posixpath.join(hf_file_local_dir(kind, sources[0], root), hub.file)
        else:
            paths[kind.field] = volume_file_path(spec, kind, sources[0], root)
    return paths


def hf_file_local_dir(kind: FineTuneKind, source: FineTuneSource, root: str = FINE_TUNES_DIR) -> str:
    """Where `hf download` puts a Hub file: ``<kind folder>/huggingface/<rev>/<repo>/<file>`` is the
    file (the revision in the path, as for the weights, so two revisions of a repo never clash)."""
    hub = source.hugging_face
    assert hub is not None
    rev = (hub.revision or "main").replace("/", "_")
    return posixpath.join(fine_tune_dir(kind, root), "huggingface", rev, hub.repo)


def hf_file_download_command(kind: FineTuneKind, source: FineTuneSource, root: str = FINE_TUNES_DIR) -> list[str]:
    """``hf download REPO FILE --local-dir DIR [--revision R]``: one file of a repo (resumes; a no-op
    when the file is there)."""
    hub = source.hugging_face
    assert hub is not None
    command = ["hf", "download", hub.repo, hub.file, "--local-dir", hf_file_local_dir(kind, source, root)]
    if hub.revision:
        command += ["--revision", hub.revision]
    return command


def volume_claim(spec: SDXLPoolSpec, source: FineTuneSource) -> str:
    """The PVC a volume file is on: its own ``claimName``, else the model's (the spec checks one exists)."""
    volume = source.volume
    assert volume is not None
    claim = volume.claim_name or (spec.model.volume.claim_name if spec.model.volume else None)
    assert claim is not None, "SDXLPoolSpec requires a claimName when the model is not on a volume"
    return claim


def volume_file_path(spec: SDXLPoolSpec, kind: FineTuneKind, source: FineTuneSource,
                     root: str = FINE_TUNES_DIR) -> str:
    """Where a volume file (or folder) appears to the worker: ``<kind folder>/volume/<claim>/<path>``."""
    volume = source.volume
    assert volume is not None
    return _volume_path(volume.path, posixpath.join(fine_tune_dir(kind, root), "volume", volume_claim(spec, source)))


# --- the worker ----------------------------------------------------------------------------------


def worker_args(
    spec: SDXLPoolSpec,
    entry: GpuEntry,
    *,
    base: str,
    refiner: str | None,
    host: str,
    port: int,
    device: str,
    provider: str | None = None,
    location: str | None = None,
    name: str | None = None,
    defaults: DefaultsSpec | None = None,
    fine_tunes: Mapping[str, str] | None = None,
) -> list[str]:
    """``worker --model BASE ... --gpu-model MODEL ...`` for one worker of `entry`.

    `provider` / `location` replace the entry's (``up`` names a local provider when the spec has
    none); `defaults` replaces the spec's (``up`` asks a tiny model on a CPU for small images);
    `fine_tunes` maps a fine-tune kind's spec field (``loras``) to its folder (``--lora-dir``).
    """
    args = ["worker", "--model", base]
    if refiner:
        args += ["--refiner", refiner]
    args += ["--host", host, "--port", str(port), "--device", device, "--gpu-model", entry.model]
    provider = provider if provider is not None else (entry.provider.name if entry.provider else None)
    location = location if location is not None else (entry.provider.location if entry.provider else None)
    if provider:
        args += ["--provider", provider]
    if location:
        args += ["--location", location]
    if name:
        args += ["--worker-name", name]
    args += fast_mode_args(entry)
    for kind in FINE_TUNE_KINDS:
        if fine_tunes and kind.field in fine_tunes:
            args += [kind.flag, fine_tunes[kind.field]]
    return args + generation_args(spec.limits, defaults or spec.defaults)


def fast_mode_args(entry: GpuEntry) -> list[str]:
    """The entry's ``--fast-mode`` for its workers (real or simulated): none for ``off``, since a fast
    mode is opt-in and inexact, only where the spec asks for it."""
    return ["--fast-mode", entry.fast_mode] if entry.fast_mode != FAST_MODE_OFF else []


def pod_worker_args(spec: SDXLPoolSpec, entry: GpuEntry, *, port: int, models_dir: str = MODELS_DIR,
                    fine_tunes_dir: str = FINE_TUNES_DIR) -> list[str]:
    """A worker in a container (a Kubernetes pod, an Akash service): all addresses, CUDA, the
    spec's weights under `models_dir`, its fine-tune folders under `fine_tunes_dir`."""
    base, refiner = model_paths(spec, models_dir)
    return worker_args(spec, entry, base=base, refiner=refiner, host="0.0.0.0", port=port, device="cuda",
                       fine_tunes=fine_tune_paths(spec, fine_tunes_dir))


def backend_entry(
    entry: GpuEntry, name: str, url: str, *, provider: str | None = None, location: str | None = None
) -> dict[str, Any]:
    """One worker of `entry` in the gateway's backends file (see sdxlpool.gateway.discovery.static)."""
    backend: dict[str, Any] = {"name": name, "url": url, "gpu": entry.model}
    provider = provider if provider is not None else (entry.provider.name if entry.provider else None)
    location = location if location is not None else (entry.provider.location if entry.provider else None)
    if provider:
        backend["provider"] = provider
    if location:
        backend["location"] = location
    backend["type"] = "sdxlpool"
    if entry.price_per_hour is not None:
        backend["pricePerHour"] = entry.price_per_hour
    return backend


# --- the gateway ---------------------------------------------------------------------------------


def gateway_args(
    spec: SDXLPoolSpec,
    *,
    discovery: list[str],
    host: str,
    port: int,
    api_keys: str | None = None,
    defaults: DefaultsSpec | None = None,
) -> list[str]:
    """``gateway DISCOVERY --host H --port P`` with the pool's rate limit, GPU models (``--pool-gpus``),
    latency target (when autoscaling is enabled), limits and defaults.

    `discovery` is how it finds the workers: ``["--backends", FILE]`` or
    ``["--kubernetes", "--namespace", NS, "--pool", NAME]``.
    """
    args = ["gateway", *discovery, "--host", host, "--port", str(port)]
    if api_keys is not None:
        args += ["--api-keys", api_keys]
    rate = spec.gateway.rate_limit
    if rate is not None:
        args += ["--rate-limit", str(rate.requests_per_minute), "--rate-limit-burst", str(rate.burst)]
    # The pool's GPU models: a request may wait for one with no worker ready (scale from zero).
    args += ["--pool-gpus", ",".join(dict.fromkeys(entry.slug for entry in spec.gpus))]
    if spec.autoscaling.enabled:
        args += ["--latency-target", str(spec.autoscaling.latency_target.p95_seconds)]
    return args + generation_args(spec.limits, defaults or spec.defaults)

