"""SillyTavern's "Stable Diffusion Web UI (AUTOMATIC1111)" source, replayed against the pool's gateway.

Sources: SillyTavern/SillyTavern src/endpoints/stable-diffusion.js (read at commit 02903fdd: the
server side, which forwards to the A1111 URL) and public/scripts/extensions/stable-diffusion/index.js
(`generateAutoImage`, the payload the browser posts to `/api/sd/generate`, which the server forwards
as the txt2img body, `url` and `auth` included). The stored copy of index.js (commit 41ac2c07) is
older than today's; its payload is a subset of the current one (`scheduler`, `hr_additional_modules`,
`override_settings` with `CLIP_stop_at_last_layers`/`sd_vae`/`forge_additional_modules`,
`override_settings_restore_afterwards`, `clip_skip`), which is replayed here as the stricter case.
Every request carries `Authorization: Basic base64(auth)`: `Basic ` with no credentials set.

What it reads from each answer (`result.ok` is checked on every call unless said otherwise):
- ping: GET /sdapi/v1/options, `ok` only.
- samplers, schedulers: `data.map(x => x.name)`; models: `data.map(x => ({value: x.title, text: x.title}))`.
- vaes: GET /sdapi/v1/sd-vae and Forge's /sdapi/v1/sd-modules together; the first that answers must
  be an array, read as `data.map(x => x.model_name)` (sd-modules may fail).
- upscalers: GET /sdapi/v1/upscalers and /sdapi/v1/latent-upscale-modes together (both must be ok),
  `x.name` of each, shown as [upscalers[0], ...latent modes, ...rest]: the choices for `hr_upscaler`.
- get-model: GET /sdapi/v1/options, `data['sd_model_checkpoint']` (status not checked).
- set-model: POST /sdapi/v1/options `{sd_model_checkpoint}`, ok; then GET /sdapi/v1/progress up to
  10 times, 2 s apart, until `progress === 0.0 && state.job_count === 0` (status not checked).
- generate: GET /sdapi/v1/options (`'forge_preset' in data` means Forge; else it drops
  `override_settings.forge_additional_modules`), then POST /sdapi/v1/txt2img; the browser reads
  `data.images[0]` as a PNG. When the browser hangs up, the server POSTs /sdapi/v1/interrupt.
"""

from __future__ import annotations

import base64
import json
import threading

import httpx
import pytest

from tests.clients.conftest import Pool, decode
from tests.clients.replay import Step, replay
from tests.polling import wait_for

AUTH = ""  # SillyTavern's sd.auto_auth default
# "Basic " with no credentials: the server's HTTP parser strips the trailing space (httpx will not send it).
HEADERS = {"Authorization": ("Basic " + base64.b64encode(AUTH.encode()).decode()).rstrip()}
BASE, OTHER = "tiny/base", "tiny-b/base"


def names(listing) -> list[str]:
    assert isinstance(listing, list)
    return [x["name"] for x in listing]


def generate_body(url: str, **settings) -> dict:
    """`generateAutoImage`'s payload with SillyTavern's defaults (steps and size shrunk for the tiny model),
    the sampler and schedule picked from the lists the panel shows."""
    body = {
        "url": url, "auth": AUTH,  # getSdRequestBody(): the server forwards the body as it came
        "prompt": "best quality, absurdres, aesthetic, a knight in a forest",
        "negative_prompt": "lowres, bad anatomy, bad hands, text, error, cropped, worst quality",
        "sampler_name": "Euler", "scheduler": "karras", "steps": 3, "cfg_scale": 7, "width": 64, "height": 64,
        "restore_faces": False, "enable_hr": False, "hr_upscaler": "Latent", "hr_scale": 2.0,
        "hr_additional_modules": [], "denoising_strength": 0.7, "hr_second_pass_steps": 0,
        # `seed` is left out (undefined) when the setting is -1
        "override_settings": {"CLIP_stop_at_last_layers": 1},  # sd_vae/forge_additional_modules undefined
        "override_settings_restore_afterwards": True, "clip_skip": 1,
        "save_images": True, "send_images": True, "do_not_save_grid": False, "do_not_save_samples": False,
    }
    return {**body, **settings}


def png_of(size: tuple[int, int], model: str | None):
    def read(data) -> None:
        image = decode(data["images"][0])
        assert image.format == "PNG" and image.size == size
        assert model is None or json.loads(data["info"])["sd_model_name"] == model

    return read


def connect_steps() -> list[Step]:
    """Opening the settings with the A1111 source: ping, then every list the panel fills."""
    return [
        Step("GET", "/sdapi/v1/options", why="ping"),
        Step("GET", "/sdapi/v1/samplers", expect=lambda d: _assert("Euler" in names(d)), why="samplers"),
        Step("GET", "/sdapi/v1/schedulers", expect=lambda d: _assert("karras" in names(d)), why="schedulers"),
        Step("GET", "/sdapi/v1/sd-models", why="models",
             expect=lambda d: _assert({x["title"].split(" [")[0] for x in d} == {BASE, OTHER})),
        Step("GET", "/sdapi/v1/sd-vae", expect=lambda d: [x["model_name"] for x in d], why="vaes (A1111)"),
        Step("GET", "/sdapi/v1/sd-modules", status=None, why="vaes (Forge's route; may fail)"),
        Step("GET", "/sdapi/v1/upscalers", why="upscalers",
             expect=lambda d: _assert(names(d)[0] == "None" and {"Lanczos", "Nearest"} <= set(names(d)))),
        Step("GET", "/sdapi/v1/latent-upscale-modes", why="upscalers: the latent modes",
             expect=lambda d: _assert({"Latent", "Latent (nearest-exact)"} <= set(names(d)))),
        Step("GET", "/sdapi/v1/options", expect=lambda d: d["sd_model_checkpoint"], why="get-model"),
    ]


def set_model_steps(title: str) -> list[Step]:
    return [
        Step("POST", "/sdapi/v1/options", body={"sd_model_checkpoint": title}, why="set-model"),
        Step("GET", "/sdapi/v1/progress", why="set-model waits for the load",
             expect=lambda d: _assert(d["progress"] == 0.0 and d["state"]["job_count"] == 0)),
        Step("GET", "/sdapi/v1/options", why="get-model after set-model",
             expect=lambda d: _assert(d["sd_model_checkpoint"] == title)),
    ]


def generate_steps(url: str, size: tuple[int, int], model: str | None, **settings) -> list[Step]:
    return [
        Step("GET", "/sdapi/v1/options", why="generate: is it Forge?",
             expect=lambda d: _assert("forge_preset" not in d)),
        Step("POST", "/sdapi/v1/txt2img", body=generate_body(url, **settings), expect=png_of(size, model),
             why="generate"),
    ]


def _assert(condition: bool) -> None:
    assert condition


def titles(pool: Pool) -> dict[str, str]:
    return {m["model_name"]: m["title"] for m in httpx.get(pool.url + "/sdapi/v1/sd-models", timeout=10).json()}


def test_sillytavern_connects_and_generates_plain_and_with_hires_fix(pool: Pool) -> None:
    title = titles(pool)
    steps = [
        *connect_steps(),
        *set_model_steps(title[OTHER]),
        *generate_steps(pool.url, (64, 64), OTHER),
        *generate_steps(pool.url, (64, 64), OTHER, seed=1234),
        *generate_steps(pool.url, (128, 128), OTHER, enable_hr=True, hr_second_pass_steps=2),
        *generate_steps(pool.url, (128, 128), OTHER, enable_hr=True, hr_upscaler="Lanczos", hr_scale=2.0,
                        denoising_strength=0.5),
        *set_model_steps(title[BASE]),
        *generate_steps(pool.url, (64, 64), BASE, seed=1234),
    ]
    replay(pool.url, steps, HEADERS)


@pytest.mark.parametrize("hires", [False, True])
def test_a_hang_up_interrupts_the_generation(pool: Pool, hires: bool) -> None:
    """The browser closes the request: SillyTavern's server POSTs /interrupt (and aborts its fetch; here
    the txt2img call is left to finish, which shows what the interrupt did)."""
    body = generate_body(pool.url, steps=60, seed=7, enable_hr=hires, hr_second_pass_steps=2)
    answer: dict = {}
    runner = threading.Thread(target=lambda: answer.update(response=httpx.post(
        pool.url + "/sdapi/v1/txt2img", json=body, headers=HEADERS, timeout=120)), daemon=True)
    runner.start()

    def running() -> bool:
        state = httpx.get(pool.url + "/sdapi/v1/progress", headers=HEADERS, timeout=10).json()
        return state.get("state", {}).get("job_count", 0) > 0 and state.get("progress", 0) > 0

    wait_for(running, timeout=60, interval=0.05)
    replay(pool.url, [Step("POST", "/sdapi/v1/interrupt", why="the browser hung up")], HEADERS)
    runner.join(timeout=120)
    response = answer["response"]
    assert response.status_code == 200, response.text
    info = json.loads(response.json()["info"])
    assert info["interrupted"] is True and info["sdxlpool"]["steps_done"] < 60


def test_sillytavern_default_sampler_and_schedule_are_accepted(pool: Pool) -> None:
    """A user who never opens the dropdowns sends SillyTavern's stored defaults: sampler "DDIM" and
    scheduler "normal" (A1111's "Normal" schedule type, in its /schedulers list since v1.9)."""
    replay(pool.url, generate_steps(pool.url, (64, 64), None, sampler_name="DDIM", scheduler="normal"), HEADERS)
