"""LoRAs through real HTTP on the tiny model: the A1111 listing, applying `<lora:name:w>`, nothing leaking.

The tiny model's `loras/` holds two kohya-layout SDXL LoRAs (sdxlpool/worker/tiny_assets/loras.py):
`tiny_unet` (UNet only) and `tiny_all` (UNet and both text encoders, alias `tinyAllV2`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.prompts import extract_networks
from sdxlpool.worker.loras import LoraFile, resolve_loras
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.polling import metrics
from tests.worker.imaging import decode, pixels

PROMPT = "a lighthouse at dusk"
BODY = {"steps": 3, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler"}


@pytest.fixture(scope="module")
def lora_dir(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny model's loras/, so tests can add files to it."""
    folder = tmp_path_factory.mktemp("loras") / "Lora"
    shutil.copytree(tiny_model.base.parent / "loras", folder)
    return folder


@pytest.fixture(scope="module")
def lora_worker(tiny_model: TinyModel, lora_dir: Path) -> Iterator[ServerThread]:
    with start_worker(tiny_model, lora_dir=lora_dir) as server:
        server.wait_ready()
        yield server


@pytest.fixture
def http(lora_worker: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=lora_worker.url, timeout=120) as c:
        yield c


def generate(client: httpx.Client, prompt: str = PROMPT, **body) -> tuple[np.ndarray, dict]:
    response = client.post("/sdapi/v1/txt2img", json={"prompt": prompt, **BODY, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return pixels(data["images"][0]), json.loads(data["info"])


def loaded(url: str) -> set[str]:
    prefix = mn.WORKER_LORA_LOADED + "{"
    return {key.split("lora=")[1].rstrip("}") for key, value in metrics(url).items()
            if key.startswith(prefix) and value == 1}


# -- resolving a prompt's calls (pure) ----------------------------------------------------------------
def _file(name: str, alias: str = "") -> LoraFile:
    return LoraFile(name, alias or name, Path(f"/loras/{name}.safetensors"), {}, 0, 0, 0)


FILES = {f.name: f for f in (_file("style"), _file("face", "faceV2"))}


def _find(name: str) -> LoraFile | None:
    return FILES.get(name) or next((f for f in FILES.values() if f.alias == name), None)


@pytest.mark.parametrize(
    ("prompt", "applied", "ignored"),
    [
        pytest.param("a <lora:style:0.8>", [("style", 0.8, 0.8)], [], id="one"),
        pytest.param("a <lora:style:0.5:1.5>", [("style", 0.5, 1.5)], [], id="te-and-unet"),
        pytest.param("a <lora:faceV2:1>", [("face", 1.0, 1.0)], [], id="by-alias"),
        pytest.param("<lora:style:0.25> a <lora:style:0.5>", [("style", 0.75, 0.75)], [], id="twice-adds-up"),
        pytest.param("a <lyco:style:1>", [("style", 1.0, 1.0)], [], id="lyco-is-lora"),
        pytest.param("a <lora:nope:1>", [], ["prompt: <lora:nope:1> (no such LoRA)"], id="missing"),
        pytest.param("a <hypernet:x:1>", [], [], id="hypernetwork-listed-by-the-prompt-text-not-here"),
        pytest.param("a <lora:style:1:1:8>", [("style", 1.0, 1.0)],
                     ["prompt: <lora:style:1:1:8> (dyn, a LyCORIS dimension, is not applied)"], id="dyn"),
        pytest.param("a <lora:style:inf>", [], ["prompt: <lora:style:inf> (the multiplier is not a finite number)"],
                     id="infinite"),
    ],
)
def test_resolving_the_prompts_calls(prompt: str, applied: list[tuple[str, float, float]], ignored: list[str]) -> None:
    _text, calls = extract_networks(prompt)
    uses, not_applied = resolve_loras(calls, _find)
    assert [(u.file.name, u.te, u.unet) for u in uses] == applied
    assert not_applied == ignored


# -- the listing ---------------------------------------------------------------------------------------
def test_loras_are_listed_in_a1111_shape_with_their_training_metadata(http: httpx.Client, lora_dir: Path) -> None:
    entries = {e["name"]: e for e in http.get("/sdapi/v1/loras").json()}
    assert set(entries) == {"tiny_unet", "tiny_all"}
    full = entries["tiny_all"]
    assert set(full) == {"name", "alias", "path", "metadata"}
    assert full["alias"] == "tinyAllV2"  # ss_output_name
    assert entries["tiny_unet"]["alias"] == "tiny_unet"
    assert full["path"] == str(lora_dir / "tiny_all.safetensors")
    metadata = full["metadata"]
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert metadata["ss_network_module"] == "networks.lora"
    assert metadata["ss_network_dim"] == "4"
    assert metadata["ss_tag_frequency"] == {"10_tiny": {"tiny": 10, "tiny_all": 10}}  # JSON values parsed, as A1111
    assert "ssmd_cover_images" not in metadata  # dropped, as A1111 does
    assert list(metadata)[:3] == ["ss_sd_model_name", "ss_resolution", "ss_clip_skip"]  # A1111's order


def test_refresh_lists_a_new_file_and_never_reads_pickles(http: httpx.Client, lora_dir: Path, tmp_path: Path) -> None:
    nested = lora_dir / "styles" / "copy_of_unet.safetensors"
    nested.parent.mkdir()
    shutil.copy(lora_dir / "tiny_unet.safetensors", nested)
    (lora_dir / "pickled.pt").write_bytes(b"\x80\x04not unpickled")
    elsewhere = tmp_path / "volume"  # a mounted volume: a link to a folder elsewhere
    elsewhere.mkdir()
    shutil.copy(lora_dir / "tiny_all.safetensors", elsewhere / "on_a_volume.safetensors")
    (lora_dir / "linked").symlink_to(elsewhere, target_is_directory=True)
    try:
        assert "copy_of_unet" not in {e["name"] for e in http.get("/sdapi/v1/loras").json()}
        response = http.post("/sdapi/v1/refresh-loras")
        assert response.status_code == 200 and response.json() is None
        names = {e["name"] for e in http.get("/sdapi/v1/loras").json()}
        # Recursive, through linked folders; the .pt file skipped.
        assert names == {"tiny_unet", "tiny_all", "copy_of_unet", "on_a_volume"}
    finally:
        shutil.rmtree(nested.parent)
        (lora_dir / "pickled.pt").unlink()
        (lora_dir / "linked").unlink()
        http.post("/sdapi/v1/refresh-loras")
    assert {e["name"] for e in http.get("/sdapi/v1/loras").json()} == {"tiny_unet", "tiny_all"}


def test_a_file_added_without_refresh_is_found_when_a_prompt_names_it(http: httpx.Client, lora_dir: Path) -> None:
    """A1111 re-scans the folder when a prompt names a LoRA it does not know."""
    added = lora_dir / "late_arrival.safetensors"
    shutil.copy(lora_dir / "tiny_all.safetensors", added)
    try:
        image, info = generate(http, f"{PROMPT} <lora:late_arrival:1>")
        assert info["sdxlpool"]["ignored"] == []
        assert np.array_equal(image, generate(http, f"{PROMPT} <lora:tiny_all:1>")[0])
    finally:
        added.unlink()
        http.post("/sdapi/v1/refresh-loras")


# -- applying ------------------------------------------------------------------------------------------
def test_weight_0_is_the_baseline_and_weight_1_changes_the_image(http: httpx.Client) -> None:
    baseline, _ = generate(http)
    zero, _ = generate(http, f"{PROMPT} <lora:tiny_all:0>")
    one, info = generate(http, f"{PROMPT} <lora:tiny_all:1>")
    assert np.array_equal(zero, baseline)
    assert np.abs(one - baseline).mean() > 5  # visibly different, not float noise
    assert info["sdxlpool"]["ignored"] == []


def test_the_call_is_removed_from_the_text_and_kept_in_the_infotext(http: httpx.Client, lora_dir: Path) -> None:
    response = http.post("/sdapi/v1/txt2img", json={"prompt": f"{PROMPT} <lora:tiny_unet:0.7>", **BODY})
    data = response.json()
    info = json.loads(data["info"])
    assert info["prompt"] == f"{PROMPT} <lora:tiny_unet:0.7>"  # A1111 keeps the call in info and infotext
    assert info["infotexts"][0].startswith(f"{PROMPT} <lora:tiny_unet:0.7>\n")
    # A1111's "Lora hashes": kohya's hash, the sha256 of the file after its header, 12 hex digits.
    raw = (lora_dir / "tiny_unet.safetensors").read_bytes()
    digest = hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little"):]).hexdigest()[:12]
    assert f'Lora hashes: "tiny_unet: {digest}", Version: sdxlpool' in info["infotexts"][0]
    assert decode(data["images"][0]).text["parameters"] == info["infotexts"][0]
    # The encoders never saw the call: at weight 0 the image is that of the bare prompt.
    assert np.array_equal(generate(http, f"<lora:tiny_unet:0>{PROMPT}")[0], generate(http)[0])


def test_text_encoder_and_unet_multipliers_act_separately(http: httpx.Client) -> None:
    baseline, _ = generate(http)
    te_only, _ = generate(http, f"{PROMPT} <lora:tiny_all:1:0>")
    unet_only, _ = generate(http, f"{PROMPT} <lora:tiny_all:0:1>")
    both, _ = generate(http, f"{PROMPT} <lora:tiny_all:1:1>")
    named, _ = generate(http, f"{PROMPT} <lora:tiny_all:te=1:unet=0>")
    assert not np.array_equal(te_only, baseline)
    assert not np.array_equal(unet_only, baseline)
    assert not np.array_equal(te_only, unet_only)
    assert not np.array_equal(both, te_only) and not np.array_equal(both, unet_only)
    assert np.array_equal(named, te_only)
    # A UNet-only LoRA has nothing for the text encoders: its te multiplier changes nothing.
    assert np.array_equal(generate(http, f"{PROMPT} <lora:tiny_unet:5:0>")[0], baseline)


def test_a_lora_is_found_by_its_alias_and_several_combine(http: httpx.Client) -> None:
    by_name, _ = generate(http, f"{PROMPT} <lora:tiny_all:0.8>")
    by_alias, _ = generate(http, f"{PROMPT} <lora:tinyAllV2:0.8>")
    assert np.array_equal(by_name, by_alias)
    unet, _ = generate(http, f"{PROMPT} <lora:tiny_unet:0.8>")
    combined, info = generate(http, f"{PROMPT} <lora:tiny_all:0.8> <lora:tiny_unet:0.8>")
    assert info["sdxlpool"]["ignored"] == []
    assert not np.array_equal(combined, by_name) and not np.array_equal(combined, unet)
    # The same LoRA twice adds up (A1111 applies it twice).
    twice, _ = generate(http, f"{PROMPT} <lora:tiny_unet:0.4> <lora:tiny_unet:0.4>")
    assert np.abs(twice - unet).max() <= 1


def test_nothing_leaks_into_the_next_request(http: httpx.Client) -> None:
    baseline, _ = generate(http)
    baseline_refined, _ = generate(http, refiner_checkpoint="tiny/refiner", refiner_switch_at=0.5)
    generate(http, f"{PROMPT} <lora:tiny_all:1>")
    assert np.array_equal(generate(http)[0], baseline)
    generate(http, f"{PROMPT} <lora:tiny_all:1> <lora:tiny_unet:-1>", refiner_checkpoint="tiny/refiner",
             refiner_switch_at=0.5)
    assert np.array_equal(generate(http)[0], baseline)
    assert np.array_equal(generate(http, refiner_checkpoint="tiny/refiner", refiner_switch_at=0.5)[0],
                          baseline_refined)


def test_concurrent_mixed_traffic_gives_each_request_its_own_image(http: httpx.Client) -> None:
    prompts = [PROMPT, f"{PROMPT} <lora:tiny_all:1>", f"{PROMPT} <lora:tiny_unet:0.9>",
               f"{PROMPT} <lora:tiny_all:0.5> <lora:tiny_unet:1>"]
    references = {p: generate(http, p)[0] for p in prompts}
    results: list[tuple[str, np.ndarray]] = []
    errors: list[BaseException] = []

    def send(prompt: str) -> None:
        try:
            with httpx.Client(base_url=str(http.base_url), timeout=120) as c:
                results.append((prompt, generate(c, prompt)[0]))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(prompts[i % len(prompts)],)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 12
    for prompt, image in results:
        assert np.array_equal(image, references[prompt]), prompt


# -- what is not applied -------------------------------------------------------------------------------
def test_a_missing_lora_is_named_in_ignored_and_the_image_made_without_it(http: httpx.Client) -> None:
    image, info = generate(http, f"{PROMPT} <lora:no_such_thing:0.5> <hypernet:x:1>")
    assert info["sdxlpool"]["ignored"] == ["prompt: <hypernet:x:1> (hypernetworks are not supported)",
                                           "prompt: <lora:no_such_thing:0.5> (no such LoRA)"]
    assert np.array_equal(image, generate(http)[0])


def test_a_multiplier_that_is_not_a_number_is_a_422_naming_the_prompt(http: httpx.Client) -> None:
    response = http.post("/sdapi/v1/txt2img", json={"prompt": f"{PROMPT} <lora:tiny_all:lots>", **BODY})
    assert response.status_code == 422
    assert "prompt" in response.text and "lots" in response.text


@pytest.mark.parametrize(
    ("keys", "shape"),
    [
        pytest.param(("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"), (4, 4), id="lycoris-loha"),
        pytest.param(("lora_down.weight", "lora_up.weight"), (320, 4), id="wrong-shapes-sd15"),
    ],
)
def test_a_file_that_is_no_sdxl_lora_is_a_422_and_leaves_nothing_behind(
        http: httpx.Client, lora_dir: Path, keys: tuple[str, ...], shape: tuple[int, int]) -> None:
    import torch
    from safetensors.torch import save_file

    baseline, _ = generate(http)
    module = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q"
    bad = lora_dir / "not_for_sdxl.safetensors"
    save_file({f"{module}.{key}": torch.ones(shape) for key in keys} | {f"{module}.alpha": torch.tensor(4.0)},
              str(bad))
    try:
        response = http.post("/sdapi/v1/txt2img", json={"prompt": f"{PROMPT} <lora:not_for_sdxl:1>", **BODY})
        assert response.status_code == 422, response.text
        assert "prompt" in response.text and "not_for_sdxl.safetensors" in response.text
        assert np.array_equal(generate(http)[0], baseline)
        assert np.array_equal(generate(http, f"{PROMPT} <lora:tiny_all:0>")[0], baseline)
    finally:
        bad.unlink()
        http.post("/sdapi/v1/refresh-loras")


# -- the cache -----------------------------------------------------------------------------------------
def test_the_cache_keeps_recent_loras_within_its_bound_and_the_metric_says_which(
        tiny_model: TinyModel, lora_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "Lora"
    shutil.copytree(lora_dir, folder)
    shutil.copy(folder / "tiny_unet.safetensors", folder / "third.safetensors")
    # Each tiny LoRA holds about 0.45 MB: two fit in 1 MB, three do not.
    with start_worker(tiny_model, lora_dir=folder, lora_cache_mb=1) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as c:
            assert loaded(server.url) == set()
            generate(c, f"{PROMPT} <lora:tiny_all:0>")
            assert loaded(server.url) == set()  # at weight 0 nothing is even loaded
            reference, _ = generate(c, f"{PROMPT} <lora:tiny_all:1>")
            generate(c, f"{PROMPT} <lora:tiny_unet:1>")
            assert loaded(server.url) == {"tiny_all", "tiny_unet"}
            generate(c, f"{PROMPT} <lora:third:1>")
            assert loaded(server.url) == {"tiny_unet", "third"}  # the least recently used went
            generate(c, f"{PROMPT} <lora:tiny_unet:1>")
            generate(c, f"{PROMPT} <lora:tiny_all:1>")  # loaded again, from cold: the same image
            assert loaded(server.url) == {"tiny_unet", "tiny_all"}
            assert np.array_equal(generate(c, f"{PROMPT} <lora:tiny_all:1>")[0], reference)
            # One job may need more than the bound: it gets all three, then the cache shrinks back.
            generate(c, f"{PROMPT} <lora:tiny_all:1> <lora:tiny_unet:1> <lora:third:1>")
            assert len(loaded(server.url)) == 2


# -- the refiner ---------------------------------------------------------------------------------------
def test_the_refiner_encodes_its_text_without_the_lora(tiny_model: TinyModel, tmp_path: Path) -> None:
    """text_encoder_2 is one module shared by base and refiner: the LoRA acts on the base's encoding
    only. Every call of it is recorded; a run without the refiner says how many are the base's, and
    generate() encodes the refiner's conditioning first, before the LoRAs go on."""
    import torch

    from sdxlpool.api.a1111 import Txt2ImgRequest
    from sdxlpool.api.generation import resolve_request
    from sdxlpool.worker.checkpoints import load_checkpoints
    from sdxlpool.worker.generate import RuntimeOptions, generate
    from sdxlpool.worker.loras import LoraAdapters, LoraLibrary, LoraUse
    from sdxlpool.worker.samplers import resolve_sampler
    from sdxlpool.worker.settings import WorkerSettings

    checkpoints = load_checkpoints([tiny_model.base], tiny_model.refiner, device="cpu", dtype=torch.float32,
                                   cache_dir=tmp_path)
    base, refiner = checkpoints.current, checkpoints.refiners[0]
    assert base.pipeline.text_encoder_2 is refiner.pipeline.text_encoder_2
    base.loras = LoraAdapters(2**30)
    settings = WorkerSettings(models=[tiny_model.base])
    params = resolve_request(Txt2ImgRequest(prompt=PROMPT, negative_prompt="fog", refiner_switch_at=0.5, subseed=1, **BODY),
                             settings.defaults, settings.limits)
    sampler = resolve_sampler("Euler")
    lora = LoraUse(LoraLibrary(tiny_model.base.parent / "loras").find("tiny_all"), 1.0, 1.0, "tiny_all")

    class Control:
        steps = 0

        def on_batch(self, batch_no: int) -> None: ...

        def on_step(self, latents) -> bool:
            self.steps += 1
            return True

        def wait(self, seconds: float) -> bool:
            return True

    def calls_of(options: RuntimeOptions, run: object) -> list[torch.Tensor]:
        calls: list[torch.Tensor] = []
        hook = base.pipeline.text_encoder_2.register_forward_hook(lambda _m, _i, out: calls.append(out[0].clone()))
        try:
            generate(base, refiner, run, sampler, options, Control())
        finally:
            hook.remove()
        return calls

    def encodings(options: RuntimeOptions) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        base_calls = len(calls_of(options, replace(params, refiner_switch_at=1.0)))  # no refiner
        calls = calls_of(options, params)
        return calls[len(calls) - base_calls:], calls[: len(calls) - base_calls]

    base_plain, refiner_plain = encodings(RuntimeOptions())
    base_lora, refiner_lora = encodings(RuntimeOptions(loras=(lora,)))
    assert base_plain and refiner_plain and len(base_lora) == len(base_plain)
    assert not any(torch.equal(a, b) for a, b in zip(base_lora, base_plain, strict=True))  # the LoRA's te2 part
    assert all(torch.equal(a, b) for a, b in zip(refiner_lora, refiner_plain, strict=True))  # none of it
