"""Which weights `up` serves: the spec's when on this machine, else the tiny model, written once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from sdxlpool.api.spec import load_pool
from sdxlpool.errors import ConfigError
from sdxlpool.local.model import resolve_model, tiny_model

EXAMPLE = Path(__file__).parents[2] / "examples" / "local-pool.yaml"


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    return hub


def spec_with(model: dict):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"]["model"] = model
    return load_pool(data).spec


def test_tiny_model_is_written_once(up_cache: Path) -> None:
    base, refiner = tiny_model(up_cache)
    assert (base / "model_index.json").is_file() and (refiner / "model_index.json").is_file()
    stamp = (base / "model_index.json").stat().st_mtime_ns
    assert tiny_model(up_cache) == (base, refiner)
    assert (base / "model_index.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    # A cache written before the fine-tune assets existed is completed, not served without them.
    shutil.rmtree(base.parent / "loras")
    (base.parent / "styles.csv").unlink()
    tiny_model(up_cache)
    assert (base.parent / "styles.csv").is_file() and sorted(p.name for p in (base.parent / "loras").iterdir())


def test_hugging_face_weights_not_cached_fall_back_to_the_tiny_model(up_cache: Path, empty_hub: Path) -> None:
    model = resolve_model(spec_with({"huggingFace": {"repo": "stabilityai/stable-diffusion-xl-base-1.0"}}),
                          cache_dir=up_cache)
    assert model.tiny and model.base == up_cache / "tiny-model" / "base"
    assert "not in the local Hugging Face cache" in model.source and "random tiny weights" in model.source


def test_hugging_face_weights_in_the_local_cache_are_used(up_cache: Path, empty_hub: Path) -> None:
    # A Hugging Face cache entry as the hub library lays it out: refs/main -> snapshots/<commit>/.
    repo = empty_hub / "models--example--sdxl"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots").mkdir()
    (repo / "snapshots" / ("0" * 40)).symlink_to(up_cache / "tiny-model" / "base", target_is_directory=True)
    model = resolve_model(spec_with({"huggingFace": {"repo": "example/sdxl"}}), cache_dir=up_cache)
    assert not model.tiny and (model.base / "model_index.json").is_file()
    assert model.base.name == "0" * 40 and "local Hugging Face cache" in model.source


def test_volume_paths_on_this_machine_are_used(up_cache: Path, tmp_path: Path) -> None:
    base = up_cache / "tiny-model" / "base"
    model = resolve_model(spec_with({"volume": {"claimName": "w", "basePath": str(base),
                                                "refinerPath": str(tmp_path / "absent")}}), cache_dir=up_cache)
    assert (model.base, model.refiner, model.tiny) == (base, None, False)
    elsewhere = resolve_model(spec_with({"volume": {"claimName": "w", "basePath": "/mnt/weights/sdxl"}}),
                              cache_dir=up_cache)
    assert elsewhere.tiny and "/mnt/weights/sdxl is not on this machine" in elsewhere.source


def test_model_flags_win_and_must_exist(up_cache: Path, tmp_path: Path) -> None:
    spec = spec_with({"huggingFace": {"repo": "example/sdxl"}})
    base = up_cache / "tiny-model" / "base"
    assert resolve_model(spec, cache_dir=up_cache, base=base).base == base
    with pytest.raises(ConfigError, match="--model"):
        resolve_model(spec, cache_dir=up_cache, base=tmp_path / "nope")


def with_fine_tunes(model: dict, **fine_tunes: list) -> object:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["spec"]["model"] = model
    data["spec"].update(fine_tunes)
    return load_pool(data).spec


def test_the_tiny_model_serves_its_own_fine_tunes_not_the_specs(up_cache: Path, empty_hub: Path) -> None:
    (up_cache / "tiny-model" / "loras").mkdir(exist_ok=True)  # written beside base/ by the tiny-model assets
    if not (up_cache / "tiny-model" / "styles.csv").exists():
        (up_cache / "tiny-model" / "styles.csv").write_text("name,prompt,negative_prompt\n")
    spec = with_fine_tunes({"huggingFace": {"repo": "stabilityai/stable-diffusion-xl-base-1.0"}},
                           loras=[{"huggingFace": {"repo": "nerijs/pixel-art-xl", "file": "pixel-art-xl.safetensors"}}])
    model = resolve_model(spec, cache_dir=up_cache)
    assert model.tiny and model.fine_tunes["loras"] == up_cache / "tiny-model" / "loras"
    assert model.fine_tunes["styles"] == up_cache / "tiny-model" / "styles.csv"
    assert any("the spec's 1 are for the real SDXL" in note for note in model.fine_tune_notes)


def test_real_weights_get_the_specs_fine_tunes_found_on_this_machine(up_cache: Path, empty_hub: Path,
                                                                      tmp_path: Path) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ink.safetensors").write_bytes(b"a LoRA from " + folder.encode())
    (tmp_path / "pixel.safetensors").write_bytes(b"pixel")
    base = up_cache / "tiny-model" / "base"
    spec = with_fine_tunes(
        {"volume": {"claimName": "w", "basePath": str(base)}},
        loras=[{"volume": {"path": str(tmp_path / "a" / "ink.safetensors")}},
               {"volume": {"path": str(tmp_path / "pixel.safetensors")}},
               {"volume": {"path": str(tmp_path / "b" / "ink.safetensors")}},
               {"volume": {"path": "/mnt/nowhere/gone.safetensors"}},
               {"huggingFace": {"repo": "nerijs/pixel-art-xl", "file": "pixel-art-xl.safetensors"}}],
        vaes=[{"volume": {"path": str(tmp_path / "a")}}],
        embeddings=[{"volume": {"path": str(tmp_path / "b")}}, {"volume": {"path": str(tmp_path / "pixel.safetensors")}}],
        styles={"volume": {"path": str(tmp_path / "styles.csv")}})
    (tmp_path / "styles.csv").write_text("name,prompt,negative_prompt\n")
    model = resolve_model(spec, cache_dir=up_cache)
    assert not model.tiny
    folder = model.fine_tunes["loras"]
    assert folder.is_relative_to(up_cache / "fine-tunes")
    linked = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert linked == {"ink.safetensors": b"a LoRA from a", "pixel.safetensors": b"pixel",
                      "2-ink.safetensors": b"a LoRA from b"}  # a second file of one name is kept, renamed
    assert model.fine_tunes["vaes"] == tmp_path / "a"  # a lone folder is used as it is
    # A folder among other entries: its files are linked (a worker's scan does not enter linked folders).
    embeddings = model.fine_tunes["embeddings"]
    assert sorted(str(p.relative_to(embeddings)) for p in embeddings.rglob("*") if p.is_symlink()) == [
        "b/ink.safetensors", "pixel.safetensors"]
    assert model.fine_tunes["styles"] == tmp_path / "styles.csv"  # --styles names the file itself
    notes = "\n".join(model.fine_tune_notes)
    assert "spec.loras[3]: /mnt/nowhere/gone.safetensors is not on this machine" in notes
    assert "spec.loras[4]: nerijs/pixel-art-xl/pixel-art-xl.safetensors (not in the local Hugging Face cache)" in notes
    assert resolve_model(spec, cache_dir=up_cache).fine_tunes["loras"] == folder  # the same links next time
