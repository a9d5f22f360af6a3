"""Which weights `sdxlpool up` serves: the spec's when they are on this machine, else the tiny model.

* `--model PATH [--refiner PATH]`: those, as given.
* `spec.model.volume`: `basePath` / `refinerPath` when they exist here (a path on this machine).
* `spec.model.huggingFace`: the repos when already in the local Hugging Face cache (nothing is
  downloaded: a whole pool should start in seconds, not after 13 GB).
* otherwise: the tiny random-weight SDXL (same architecture, a few MB), written once under
  `$SDXLPOOL_CACHE/tiny-model` and reused; its images are noise, and `up` says so.

Fine-tunes (`spec.loras`, `.embeddings`, `.vaes`, `.styles`) follow the weights:

* the tiny model: its own test fine-tunes (`tiny-model/loras`, `embeddings`, `vae`, `styles.csv`, where written),
  since files made for the real SDXL do not fit its tiny layers;
* real weights: each listed file found here (a `volume.path` on this machine, a `huggingFace` file
  in the local Hugging Face cache; nothing is downloaded), linked into one folder per kind under
  `$SDXLPOOL_CACHE/fine-tunes/` (a lone folder entry is used as it is; styles.csv is passed as it
  is); the others are named in the start-up notes.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
from pathlib import Path

from sdxlpool.api.pool_config import FINE_TUNE_KINDS, FineTuneKind, fine_tune_label
from sdxlpool.api.spec import FineTuneSource, SDXLPoolSpec
from sdxlpool.errors import ConfigError
from sdxlpool.local.plan import Model

__all__ = ["resolve_model", "tiny_model"]


def resolve_model(spec: SDXLPoolSpec, *, cache_dir: Path, base: Path | None = None,
                  refiner: Path | None = None) -> Model:
    """The weights `up` serves, with the fine-tune folders that go with them."""
    model = _resolve_weights(spec, cache_dir=cache_dir, base=base, refiner=refiner)
    folders, notes = _tiny_fine_tunes(spec, model.base.parent) if model.tiny else _spec_fine_tunes(spec, cache_dir)
    return dataclasses.replace(model, fine_tunes=folders, fine_tune_notes=notes)


def _resolve_weights(spec: SDXLPoolSpec, *, cache_dir: Path, base: Path | None, refiner: Path | None) -> Model:
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


# What `write_tiny_model` leaves: a cache from before the fine-tune assets is written again.
_TINY_MODEL_PARTS = ("base/model_index.json", "refiner/model_index.json", "loras", "embeddings", "vae",
                     "styles.csv")


def tiny_model(cache_dir: Path) -> tuple[Path, Path]:
    """The tiny model under `cache_dir/tiny-model`, written on first use (one writer at a time)."""
    from sdxlpool.worker.tiny import write_tiny_model

    target = cache_dir / "tiny-model"
    base, refiner = target / "base", target / "refiner"
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two `up`s starting at once write it once
        if not all((target / part).exists() for part in _TINY_MODEL_PARTS):
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


def _listed(spec: SDXLPoolSpec, kind: FineTuneKind) -> list[FineTuneSource]:
    return spec.fine_tunes(kind.field)


def _tiny_fine_tunes(spec: SDXLPoolSpec, tiny_root: Path) -> tuple[dict[str, Path], tuple[str, ...]]:
    assets = {kind.field: tiny_root / ("styles.csv" if kind.file else kind.folder) for kind in FINE_TUNE_KINDS}
    folders = {field: path for field, path in assets.items() if path.exists()}
    notes = []
    listed = sum(len(_listed(spec, kind)) for kind in FINE_TUNE_KINDS)
    if listed:
        notes.append(f"fine-tunes: the spec's {listed} are for the real SDXL; the tiny model serves its own test "
                     f"ones instead ({', '.join(str(folder) for folder in folders.values()) or 'none written'})")
    return folders, tuple(notes)


def _spec_fine_tunes(spec: SDXLPoolSpec, cache_dir: Path) -> tuple[dict[str, Path], tuple[str, ...]]:
    folders: dict[str, Path] = {}
    notes: list[str] = []
    for kind in FINE_TUNE_KINDS:
        found: list[Path] = []
        for index, source in enumerate(_listed(spec, kind)):
            path = _local_file(source)
            if path is None:
                notes.append(f"spec.{fine_tune_label(kind, index)}: {_describe(source)} is not on this machine; left out")
            else:
                found.append(path)
        if found and kind.file:
            folders[kind.field] = found[0]  # the one file its flag names (styles.csv)
        elif len(found) == 1 and found[0].is_dir():
            folders[kind.field] = found[0]
        elif found:
            folders[kind.field] = _linked_folder(cache_dir, kind, found)
    return folders, tuple(notes)


def _describe(source: FineTuneSource) -> str:
    if source.hugging_face is not None:
        return f"{source.hugging_face.repo}/{source.hugging_face.file} (not in the local Hugging Face cache)"
    assert source.volume is not None
    return source.volume.path


def _local_file(source: FineTuneSource) -> Path | None:
    """A volume path that exists here, or a Hub file already in the local cache (never downloads)."""
    if source.volume is not None:
        path = Path(source.volume.path)
        return path if path.exists() else None
    hub = source.hugging_face
    assert hub is not None
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return Path(hf_hub_download(hub.repo, hub.file, revision=hub.revision, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def _linked_folder(cache_dir: Path, kind: FineTuneKind, paths: list[Path]) -> Path:
    """A folder of symbolic links to the files `paths` name (a folder's files, kept under its name:
    a worker's scan does not enter linked folders), one folder per set of paths."""
    digest = hashlib.sha256("\0".join(str(p.resolve()) for p in paths).encode()).hexdigest()[:12]
    folder = cache_dir / "fine-tunes" / f"{kind.folder}-{digest}"
    for index, path in enumerate(paths):
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                _link(folder / path.name / file.relative_to(path), file, folder / f"{index}-{path.name}" /
                      file.relative_to(path))
        else:
            _link(folder / path.name, path, folder / f"{index}-{path.name}")
    return folder


def _link(link: Path, target: Path, other: Path) -> None:
    """`link` -> `target`; when `link` is another file's, `other` (both are offered, the second renamed)."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    if link.exists() or link.is_symlink():
        link = other
        other.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
    link.symlink_to(target.resolve())
