"""A pool as an A1111 client meets it: a real gateway over two real tiny-model workers, on 127.0.0.1.

Both workers hold the same two checkpoints (`tiny/base`, `tiny-b/base`) and the fine-tune folders, so
a client's model choice, LoRA list and generations mean the same on either one, and the gateway may
place any request on any worker. The workers start one after the other (diffusers' loading is not
thread-safe within one process), then the gateway, which is ready once it sees both workers up.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.conftest import ServerThread, TinyModel, start_worker
from tests.gateway.conftest import start_gateway, write_backends
from tests.polling import wait_for


@dataclass(frozen=True)
class Pool:
    gateway: ServerThread
    workers: tuple[ServerThread, ...]

    @property
    def url(self) -> str:
        return self.gateway.url

    @property
    def host_port(self) -> tuple[str, int]:
        host, port = self.gateway.url.removeprefix("http://").split(":")
        return host, int(port)


def _up(gateway: str) -> bool:
    backends = httpx.get(gateway + "/v1/backends", timeout=5).json()["backends"]
    return len(backends) == 2 and all(b["available"] for b in backends)


@pytest.fixture(scope="module")
def pool(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    assets = tiny_model.base.parent
    folder = tmp_path_factory.mktemp("client-pool")
    with ExitStack() as stack:
        workers = []
        for name in ("w1", "w2"):
            worker = stack.enter_context(start_worker(
                tiny_model, models=[tiny_model.base, tiny_model.other_base], refiner=None, warmup=False,
                lora_dir=assets / "loras", vae_dir=assets / "vae", styles=assets / "styles.csv",
                worker_name=name))
            worker.wait_ready()
            workers.append(worker)
        backends = [{"name": f"w{i}", "url": w.url, "gpu": gpu, "type": "sdxlpool"}
                    for i, (w, gpu) in enumerate(zip(workers, ("RTX 3090", "A100"), strict=True), start=1)]
        gateway = stack.enter_context(start_gateway(write_backends(Path(folder) / "backends.yaml", backends)))
        gateway.wait_ready()
        wait_for(lambda: _up(gateway.url), timeout=60)
        yield Pool(gateway, tuple(workers))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def b64_png(image: Image.Image) -> str:
    return base64.b64encode(png(image)).decode()


def decode(b64: str) -> Image.Image:
    """A base64 image as a client decodes it (a `data:` prefix is what a browser client would strip)."""
    image = Image.open(io.BytesIO(base64.b64decode(b64.split(",", 1)[-1])))
    image.load()
    return image
