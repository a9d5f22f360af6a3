"""Textual-inversion embeddings from --embeddings-dir: listed as A1111 lists them, used by name."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import torch
from safetensors.torch import save_file

from tests.conftest import start_worker
from tests.worker.imaging import pixels

BODY = {"seed": 5, "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler"}


def image(url: str, prompt: str) -> np.ndarray:
    response = httpx.post(url + "/sdapi/v1/txt2img", json={**BODY, "prompt": prompt}, timeout=120)
    assert response.status_code == 200, response.text
    return pixels(response.json()["images"][0])


def test_tiny_embedding_is_listed(client: httpx.Client) -> None:
    listing = client.get("/sdapi/v1/embeddings").json()
    assert listing == {"loaded": {"tiny-style": {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None,
                                                 "shape": 32 + 48, "vectors": 2}}, "skipped": {}}


def test_embedding_changes_the_image_and_leaves_nothing_behind(worker, tiny_model, tmp_path: Path) -> None:
    folder = tmp_path / "embeddings"
    folder.mkdir()
    # Not for this model: an SD 1.5 embedding (A1111's .pt layout, as safetensors: one 768 tensor),
    # and an SDXL one of other widths; and a file that is no embedding at all.
    save_file({"emb_params": torch.zeros(1, 768)}, str(folder / "sd15.safetensors"))
    save_file({"clip_l": torch.zeros(3, 768), "clip_g": torch.zeros(3, 1280)}, str(folder / "big-sdxl.safetensors"))
    (folder / "notes.pt").write_bytes(b"not a tensor file")
    with start_worker(tiny_model, models=[tiny_model.base], embeddings_dir=folder, warmup=False) as other:
        other.wait_ready()
        listing = httpx.get(other.url + "/sdapi/v1/embeddings").json()
        assert listing["loaded"] == {}
        assert {name: entry["shape"] for name, entry in listing["skipped"].items()} == {"sd15": 768, "big-sdxl": 2048}
        # Same weights on both workers: without the embedding the name is plain text, and images agree.
        assert np.array_equal(image(other.url, "a cat"), image(worker.url, "a cat"))
        without = image(other.url, "a tiny-style cat")
    baseline = image(worker.url, "a cat")
    with_embedding = image(worker.url, "a tiny-style cat")
    assert not np.array_equal(with_embedding, without)
    assert np.array_equal(image(worker.url, "a cat"), baseline)  # the hook is gone after the job
    info = json.loads(httpx.post(worker.url + "/sdapi/v1/txt2img", json={**BODY, "prompt": "tiny-style"},
                                 timeout=120).json()["info"])
    assert info["sdxlpool"]["ignored"] == []
