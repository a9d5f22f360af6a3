"""Open WebUI's AUTOMATIC1111 image engine, replayed against the pool's gateway.

Source: open-webui/open-webui, backend/open_webui/routers/images.py (read at commit 02530d50):
`verify_url`, `get_models`, `set_image_model`, `get_image_model` and `image_generations` for the
engine "automatic1111". Every request carries `authorization: Basic base64(AUTOMATIC1111_API_AUTH)`,
which is `Basic ` (nothing after it) with the default, empty, setting. Open WebUI edits images
only with the openai, gemini and comfyui engines: it never calls A1111's img2img.

What it reads from each answer:
- GET /sdapi/v1/options: only `raise_for_status()` when verifying the URL; `options['sd_model_checkpoint']`
  as the current model; and when the admin picks another model it POSTs the *whole* options object it
  got back, with `sd_model_checkpoint` changed (`raise_for_status()`), so every key GET answers must be
  accepted by POST.
- GET /sdapi/v1/sd-models: `[{'id': m['title'], 'name': m['model_name']}]`.
- POST /sdapi/v1/txt2img with `{prompt, batch_size: n, width, height, steps, negative_prompt}` merged
  with the admin's AUTOMATIC1111_PARAMS: `res['images']` (each base64 without a `data:` prefix is read
  as image/png) and `res['info']` (kept as the file's metadata). Its status is not checked.
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.clients.conftest import Pool, decode
from tests.clients.replay import Step, replay

# Open WebUI's default sends "Basic " (empty credentials); an HTTP/1.1 server strips the trailing space
# (h11 does, and httpx refuses to send it), so the gateway sees "Basic".
HEADERS = {"authorization": ("Basic " + base64.b64encode(b"").decode()).rstrip()}
BASE, OTHER = "tiny/base", "tiny-b/base"
PARAMS = {"sampler_name": "Euler", "cfg_scale": 5}  # an admin's AUTOMATIC1111_PARAMS, merged into txt2img


def model_list(models) -> None:
    listed = [{"id": m["title"], "name": m["model_name"]} for m in models]
    assert {entry["name"] for entry in listed} == {BASE, OTHER}


def title_of(answers, name: str) -> str:
    models = next(a for a in answers if isinstance(a, list))
    return next(m["title"] for m in models if m["model_name"] == name)


def set_model(name: str) -> list[Step]:
    """`set_image_model`: read the options, and when the model differs POST them back changed."""
    def changed(answers):
        options = dict(answers[-1])
        options["sd_model_checkpoint"] = title_of(answers, name)
        return options

    return [
        Step("GET", "/sdapi/v1/options", expect=lambda o: o["sd_model_checkpoint"], why="set_image_model reads"),
        Step("POST", "/sdapi/v1/options", body=changed, why="set_image_model posts the whole options back"),
    ]


def current_model_is(name: str) -> Step:
    return Step("GET", "/sdapi/v1/options", why="get_image_model",
                expect=lambda o: _assert(o["sd_model_checkpoint"].startswith(name + " ")))


def txt2img(n: int, name: str) -> Step:
    def read(res) -> None:
        images = [decode(image) for image in res["images"]]  # `get_image_data`: no comma -> base64 PNG
        assert len(images) == n and all(i.format == "PNG" and i.size == (64, 64) for i in images)
        info = json.loads(res["info"])
        assert info["sd_model_name"] == name and len(info["all_seeds"]) == n

    return Step("POST", "/sdapi/v1/txt2img", why="image_generations", expect=read, body={
        "prompt": "a watercolor fox", "batch_size": n, "width": 64, "height": 64, "steps": 3,
        "negative_prompt": "blurry", **PARAMS})


def _assert(condition: bool) -> None:
    assert condition


@pytest.fixture
def sequence_of_an_admin() -> list[Step]:
    return [
        Step("GET", "/sdapi/v1/options", why="verify_url: raise_for_status only"),
        Step("GET", "/sdapi/v1/sd-models", expect=model_list, why="get_models"),
        *set_model(OTHER),  # the admin saves the image settings with the other model
        current_model_is(OTHER),
        Step("GET", "/sdapi/v1/options", why="a generation by an admin with a model: set_image_model reads,"
             " finds it current, posts nothing", expect=lambda o: o["sd_model_checkpoint"]),
        txt2img(1, OTHER),
        txt2img(2, OTHER),
        *set_model(BASE),
        current_model_is(BASE),
        txt2img(1, BASE),
    ]


def test_open_webui_lists_sets_and_generates_through_the_gateway(pool: Pool, sequence_of_an_admin) -> None:
    replay(pool.url, sequence_of_an_admin, HEADERS)
