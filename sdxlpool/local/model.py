"""Which weights `sdxlpool up` serves: the spec's when they are on this machine, else the tiny model.

* `--model PATH [--refiner PATH]`: those, as given.
* `spec.model.volume`: `basePath` / `refinerPath` when they exist here (a path on this machine).
* `spec.model.huggingFace`: the repos when already in the local Hugging Face cache (nothing is
  downloaded: a whole pool should start in seconds, not after 13 GB).
* otherwise: the tiny random-weight SDXL (same architecture, a few MB), written once under
  `$SDXLPOOL_CACHE/tiny-model` and reused; its images are noise, and `up` says so.
"""

from __future__ import annotations

import fcntl
from pathlib import Path

from sdxlpool.api.spec import SDXLPoolSpec
from sdxlpool.errors import ConfigError
from sdxlpool.local.plan import Model

__all__ = ["resolve_model", "tiny_model"]


def resolve_model(spec: SDXLPoolSpec, *, cache_dir: Path, base: Path | None = None,
                  refiner: Path | None = None) -> Model:
    if base is not None:
        for flag, path in (("--model", base), ("--refiner", refiner)):
            if path is not None and not path.exists():
                raise ConfigError(f"{flag} {path}: no such file or folder")
        return Model(base, refiner, tiny=False, source=f"{base}" + (f" with refiner {refiner}" if refiner else ""))
    source = spec.model
    missing = ""
    if source.volume is not None:
        local_base = Path(source.volume.base_path)
        if local_base.exists():
            local_refiner = Path(source.volume.refiner_path) if source.volume.refiner_path else None
            if local_refiner is not None and not local_refiner.exists():
                local_refiner = None
            return Model(local_base, local_refiner, tiny=False, source=f"{local_base} (spec.model.volume)")
        missing = f"spec.model.volume.basePath {local_base} is not on this machine"
    elif source.hugging_face is not None:
        hub = source.hugging_face
        cached = _hub_snapshot(hub.repo, hub.revision)
        if cached is not None:
            cached_refiner = _hub_snapshot(hub.refiner_repo, hub.revision) if hub.refiner_repo else None
            return Model(cached, cached_refiner, tiny=False, source=f"{hub.repo} from the local Hugging Face cache")
        missing = f"{hub.repo} is not in the local Hugging Face cache (up downloads nothing)"
    tiny_base, tiny_refiner = tiny_model(cache_dir)
    return Model(tiny_base, tiny_refiner, tiny=True,
                 source=f"{missing}: serving the tiny random-weight SDXL from {tiny_base.parent} instead; its images "
                        "are noise from random tiny weights, for trying the pool out")


def tiny_model(cache_dir: Path) -> tuple[Path, Path]:
    """The tiny model under `cache_dir/tiny-model`, written on first use (one writer at a time)."""
    from sdxlpool.worker.tiny import write_tiny_model

    target = cache_dir / "tiny-model"
    base, refiner = target / "base", target / "refiner"
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `up`s starting at once write it once
        if not ((base / "model_index.json").is_file() and (refiner / "model_index.json").is_file()):
            from sdxlpool.worker.checkpoints import quiet_library_noise

            quiet_library_noise()
            write_tiny_model(target)
    return base, refiner


def _hub_snapshot(repo: str, revision: str | None) -> Path | None:
    """The repo's folder in the local Hugging Face cache, or None (never downloads)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        folder = Path(snapshot_download(repo, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    return folder if (folder / "model_index.json").is_file() else None
