"""The web page in Debian's Chromium: generate on the chosen GPU with live progress, see the result
and the earlier images, and read the errors (401, 422, 503, 429) on a phone-sized screen.

The page runs under its own Content-Security-Policy (not bypassed), so a test passing also says
that no inline script or style was needed; it must not ask anything of any other origin.
Waiting is done with playwright's `expect` (string predicates would need eval, which the CSP forbids).
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from sdxlpool.api import metric_names as mn
from tests.polling import metrics
from tests.web.conftest import API_KEY, CHROMIUM

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason=f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)")

DEFAULT_PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
# Refreshing the README's screenshot is asked for, not a side effect of every run: a test run must
# leave the tree clean (benchmark results record whether it was).
UPDATE_SCREENSHOT = os.environ.get("SDXLPOOL_UPDATE_SCREENSHOT") == "1"
GENERATION_TIMEOUT_MS = 180_000  # a tiny-model image on two busy CPU cores


class Watched:
    """A page plus what it did: the WebSocket events it received, the URLs it asked for, and any
    console error or uncaught exception (a CSP violation shows up as a console error)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.events: list[dict] = []
        self.sent: list[dict] = []  # the request objects the page sent on its WebSocket
        self.urls: list[str] = []
        self.errors: list[str] = []
        page.on("websocket", self._watch_socket)
        page.on("request", lambda request: self.urls.append(request.url))
        page.on("console", lambda message: self.errors.append(f"{message.text} [{message.location.get('url', '')}]")
                if message.type == "error" else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _watch_socket(self, ws) -> None:
        ws.on("framereceived", lambda payload: self.events.append(json.loads(payload)))
        ws.on("framesent", lambda payload: self.sent.append(json.loads(payload)))

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.events]


@pytest.fixture
def desktop(browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


@pytest.fixture
def phone(browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    try:
        yield Watched(context.new_page())
    finally:
        context.close()


def switch(page: Page, gpu_name: str):
    return page.get_by_role("switch", name=gpu_name, exact=True)


def watch_progress(page: Page) -> None:
    """Record every value the progress bar and the status line take (read back by `seen`)."""
    page.evaluate("""() => {
        window.seen = {progress: [], status: []};
        const bar = document.getElementById("progress"), status = document.getElementById("status");
        new MutationObserver(() => window.seen.progress.push([bar.value, bar.max]))
            .observe(bar, {attributes: true, attributeFilter: ["value", "max"]});
        new MutationObserver(() => window.seen.status.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true});
    }""")


def no_horizontal_overflow(page: Page) -> None:
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, f"the page is {width}px wide in a {inner}px viewport"


def generate(page: Page, **fields: str) -> None:
    for name, value in fields.items():
        page.fill(f"#{name}", value)
    page.locator("#generate").focus()
    page.keyboard.press("Enter")


def requests_served(url: str) -> float:
    return sum(v for k, v in metrics(url).items() if k.startswith(f"{mn.WORKER_REQUESTS}_total"))


def test_generate_on_the_chosen_gpu_with_live_progress(desktop: Watched, gateway, pool_workers, tmp_path: Path) -> None:
    page = desktop.page
    page.goto(gateway.url)

    # 1. The form: the defaults, the sampler list from the pool, one switch per GPU model.
    expect(page.locator("#sampler_name option[value='Euler a']")).to_have_count(1)
    assert page.locator("#sampler_name option").count() > 12  # samplers x schedule types
    expect(page.locator("#sampler_name")).to_have_value("DPM++ SDE Karras")
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(DEFAULT_PROMPT)
    expect(page.get_by_label("Steps")).to_have_value("25")
    # The size is the pool's default (the test gateway's 128x128), not the page's 1024x1024.
    expect(page.get_by_label("Width", exact=True)).to_have_value("128")
    expect(page.get_by_label("Height", exact=True)).to_have_value("128")
    expect(page.get_by_label("Refiner switch at")).to_have_value("0.8")
    for name, availability in (("A100", "1 up · idle · $1.10/h"), ("RTX 3090", "1 up · idle · $0.35/h"),
                               ("H100", "down · $2.49/h")):
        expect(switch(page, name)).to_be_checked()
        expect(page.locator(".gpu", has=switch(page, name))).to_contain_text(availability)

    # 2. With the keyboard: Tab from the prompt reaches the switches, then Generate; A100 and H100
    #    off with the space bar, then a small image on what is left.
    page.get_by_label("Prompt", exact=True).focus()
    order = []
    while len(order) < 10 and "generate" not in order:
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
        if order[-1].startswith("gpu-"):  # a visible focus ring on the switch
            assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    assert order == ["negative_prompt", "gpu-a100", "gpu-h100", "gpu-rtx-3090", "generate"]
    for name in ("A100", "H100"):
        switch(page, name).focus()
        page.keyboard.press("Space")
        expect(switch(page, name)).not_to_be_checked()
    a100_before = requests_served(pool_workers["a100-1"].url)
    page.select_option("#sampler_name", "Euler")
    watch_progress(page)
    generate(page, width="128", height="128", steps="8", seed="1234")

    # 3. Live: queued, which GPU took it, step k of n; then the image and where and how fast.
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.locator("#current")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    expect(page.locator("#status")).to_contain_text("Done on RTX 3090 (provider-rtx-1, rack-rtx-1)")
    seen = page.evaluate("window.seen")
    assert any(re.match(r"Step \d of 8 on RTX 3090", text) for text in seen["status"]), seen["status"]
    assert any(text.startswith("Queued at the gateway") for text in seen["status"]), seen["status"]
    assert any(text.startswith("Running on RTX 3090 (provider-rtx-1, rack-rtx-1)") for text in seen["status"])
    assert any(0 < value < maximum == 8 for value, maximum in seen["progress"]), seen["progress"]
    assert page.eval_on_selector("#progress", "bar => [bar.value, bar.max]") == [8, 8]
    expect(page.locator("#placement")).to_have_text("RTX 3090 · provider-rtx-1 · rack-rtx-1 · worker rtx-1")
    meta = page.locator("#result-meta")
    for term, value in (("GPU", "RTX 3090"), ("Provider", "provider-rtx-1"), ("Location", "rack-rtx-1"),
                        ("Seed", "1234"), ("Size", "128 × 128")):
        expect(meta.locator("div", has=page.locator("dt", has_text=term)).locator("dd")).to_have_text(value)
    for term in ("Queue time", "Inference time", "Total"):
        expect(meta.locator("div", has=page.locator("dt", has_text=term)).locator("dd")).to_have_text(
            re.compile(r"^\d+\.\d+ s$"))
    image = page.locator("#result-image")
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    assert page.eval_on_selector("#result-image", "img => [img.complete, img.naturalWidth]") == [True, 128]
    assert DEFAULT_PROMPT in image.get_attribute("alt")
    download = page.get_by_role("link", name="Download PNG")
    assert download.get_attribute("href") == image.get_attribute("src")
    assert download.get_attribute("download").endswith(".png")

    # 4. Served by the allowed GPU only, as the events say and the A100 worker's own count agrees.
    assert {"queued", "assigned", "progress", "done"} <= set(desktop.kinds())
    done = next(event for event in desktop.events if event["event"] == "done")
    assert (done["gpu_model"], done["worker"], done["seed"]) == ("rtx-3090", "rtx-1", 1234)
    assert all(event["gpu_model"] == "rtx-3090" for event in desktop.events if event["event"] == "assigned")
    assert requests_served(pool_workers["a100-1"].url) == a100_before

    # 5. The A100 only, the default sampler: the second image shows, the first moves to "Earlier images".
    switch(page, "RTX 3090").click()
    switch(page, "A100").click()
    page.select_option("#sampler_name", "DPM++ SDE Karras")
    generate(page, seed="5678")
    expect(page.locator("#status")).to_contain_text("Done on A100 (provider-a100-1, rack-a100-1)",
                                                    timeout=GENERATION_TIMEOUT_MS)
    earlier = page.locator("#history li")
    expect(earlier).to_have_count(1)
    expect(earlier).to_contain_text("RTX 3090")
    done = [event for event in desktop.events if event["event"] == "done"][-1]
    assert (done["gpu_model"], done["worker"]) == ("a100", "a100-1")
    assert requests_served(pool_workers["a100-1"].url) == a100_before + 1  # the count above does count
    expect(page.locator("#alert")).to_be_empty()

    # 6. The screenshot for the README, at desktop size, then: an earlier image can be shown again.
    expect(page.locator(".gpu", has=switch(page, "A100"))).to_contain_text("1 up · idle")  # refreshed when done
    page.evaluate("window.scrollTo(0, 0)")
    save_screenshot(page.screenshot(full_page=True), SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "screenshot.png")
    earlier.get_by_role("button").click()
    expect(meta.locator("div", has=page.locator("dt", has_text="GPU")).locator("dd")).to_have_text("RTX 3090")
    expect(page.locator("#history li")).to_contain_text("A100")

    # 7. Cancel stops a running generation; the page is ready for the next.
    generate(page, steps="60")
    expect(page.locator("#status")).to_contain_text("Step", timeout=GENERATION_TIMEOUT_MS)
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#status")).to_have_text("Cancelled.")
    expect(page.get_by_role("button", name="Generate")).to_be_enabled()
    expect(page.locator("#alert")).to_be_empty()
    assert desktop.events[-1]["event"] == "error" and desktop.events[-1]["error"] == "cancelled"

    # Nothing but this gateway was asked for anything, and the CSP was never violated.
    origin = gateway.url.split("//", 1)[1]
    assert all(url.split("//", 1)[-1].startswith(origin + "/") or url.startswith("data:") for url in desktop.urls), \
        desktop.urls
    assert desktop.errors == []


def save_screenshot(png: bytes, path: Path) -> None:
    """The README's screenshot (docs/screenshot.png with SDXLPOOL_UPDATE_SCREENSHOT=1): a 128-colour
    palette PNG, so that the generated image (noise, from the tiny model) does not make it weigh
    most of a megabyte."""
    rgb = Image.open(io.BytesIO(png)).convert("RGB")
    buffer = io.BytesIO()
    rgb.quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(buffer, "PNG",
                                                                                              optimize=True)
    assert len(buffer.getvalue()) < 300_000, f"screenshot is {len(buffer.getvalue())} bytes"
    path.write_bytes(buffer.getvalue())


def test_errors_are_readable_on_a_phone(phone: Watched, strict_gateway) -> None:
    page = phone.page
    page.goto(strict_gateway.url)
    expect(switch(page, "H100")).to_be_checked()
    expect(page.get_by_label("API key")).to_be_visible()  # the gateway said keys are required
    no_horizontal_overflow(page)
    # One column: the result panel sits below the form, as wide as it.
    form, result = page.locator("#form").bounding_box(), page.locator("#result").bounding_box()
    assert result["y"] > form["y"] and abs(result["x"] - form["x"]) < 1 and abs(result["width"] - form["width"]) < 1
    alert = page.locator("#alert[role=alert]")  # display: none while empty, so not by role

    # 401: no key yet. The page asks for one, and the key goes with the next connection.
    page.get_by_role("button", name="Generate").tap()
    expect(alert).to_contain_text("API key needed (401)")
    expect(page.get_by_label("API key")).to_be_focused()
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Use key").tap()
    expect(alert).to_be_empty()

    # 422 names the field, which is marked and focused.
    page.get_by_label("Steps").fill("1000")
    page.get_by_role("button", name="Generate").tap()
    expect(alert).to_contain_text("Steps: must be between 1 and 150, got 1000")
    expect(page.get_by_label("Steps")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Steps")).to_be_focused()
    no_horizontal_overflow(page)

    # 503 names the GPU model that is down (the only one left switched on).
    page.get_by_label("Steps").fill("8")
    for name in ("A100", "RTX 3090"):
        switch(page, name).tap()
    expect(page.locator(".gpu", has=switch(page, "H100"))).to_contain_text("down")
    page.get_by_role("button", name="Generate").tap()
    expect(alert).to_contain_text("No GPU available (503)")
    expect(alert).to_contain_text("No worker is up for H100")
    expect(page.get_by_label("Steps")).not_to_have_attribute("aria-invalid", "true")

    # 429: that was this key's one request of the minute; the page says how long to wait.
    page.get_by_role("button", name="Generate").tap()
    expect(alert).to_contain_text("Too many requests (429)")
    expect(alert).to_contain_text(re.compile(r"Wait \d+ seconds? and try again"))
    no_horizontal_overflow(page)

    # Nothing switched on: the page says so itself, naming the field.
    switch(page, "H100").tap()
    page.get_by_role("button", name="Generate").tap()
    expect(alert).to_contain_text("GPU models: switch on at least one GPU model")
    expected = [(401, "unauthorized"), (422, "invalid_request"), (503, "no_backend"), (429, "rate_limited")]
    assert [(e["status"], e["error"]) for e in phone.events if e["event"] == "error"] == expected
    assert phone.errors == []


# -- Issue 15: img2img with an uploaded image, an inpainting mask, the hires fix ------------------

INIT_SIZE = (96, 64)
def write_init_image(path: Path) -> bytes:
    """A 96x64 PNG with a different colour at every pixel (a gradient), so that pixels can be compared."""
    image = Image.new("RGB", INIT_SIZE)
    image.putdata([(x * 2 + 30, y * 3 + 20, 200 - x) for y in range(INIT_SIZE[1]) for x in range(INIT_SIZE[0])])
    image.save(path, "PNG")
    return path.read_bytes()


def data_url_image(url: str) -> Image.Image:
    assert url.startswith("data:image/png;base64,"), url[:40]
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def tab_order(page: Page, start: str, stop: str) -> list[str]:
    """The ids Tab visits from #start until #stop, each checked for a visible (solid) focus ring."""
    page.locator(f"#{start}").focus()
    order: list[str] = []
    while len(order) < 20 and stop not in order:
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid", order[-1]
    return order


def upload(page: Page, tmp_path: Path) -> bytes:
    """Set the file input to a PNG the test writes; the image controls appear for it."""
    init = write_init_image(tmp_path / "start.png")
    page.get_by_label("Image for img2img").set_input_files(tmp_path / "start.png")
    expect(page.get_by_role("button", name="Remove image")).to_be_visible()
    expect(page.locator("#init-thumb")).to_have_attribute("alt", re.compile(r"start\.png, 96 × 64$"))
    expect(page.locator("#init-thumb")).to_have_js_property("complete", True)
    return init


def last_request(watched: Watched) -> dict:
    requests = [message for message in watched.sent if "prompt" in message]
    assert requests, watched.sent
    return requests[-1]


def meta_value(page: Page, term: str):
    meta = page.locator("#result-meta")
    return meta.locator("div", has=page.locator("dt", has_text=re.compile(f"^{re.escape(term)}$"))).locator("dd")


def test_img2img_and_inpaint_mask_from_the_page(desktop: Watched, gateway, tmp_path: Path) -> None:
    page = desktop.page
    page.goto(gateway.url)
    expect(page.locator("#sampler_name option[value='Euler']")).to_have_count(1)

    # 1. No image: no image controls; the hires fix can be switched on (keyboard), with its scale and
    #    upscaler ("Latent" at least, whatever the pool's upscaler list says).
    expect(page.get_by_label("Denoising strength")).to_be_hidden()
    expect(page.get_by_role("button", name="Mask: whole image")).to_be_hidden()
    page.get_by_role("switch", name="Upscale and refine").focus()
    page.keyboard.press("Space")
    expect(page.get_by_label("Upscale by")).to_have_value("2")
    expect(page.locator("#hr_upscaler option[value='Latent']")).to_have_count(1)
    expect(page.get_by_label("Upscaler")).to_have_value("Latent")
    expect(page.locator("#hires-size")).to_have_text("Final size: 256 × 256")  # the pool's 128 x 128, twice

    # 2. An uploaded image: its thumbnail, the output size set to its own, the denoising slider at
    #    A1111's 0.75, and the hires fix off (text to image only).
    init = upload(page, tmp_path)
    expect(page.get_by_label("Width", exact=True)).to_have_value("96")
    expect(page.get_by_label("Height", exact=True)).to_have_value("64")
    expect(page.get_by_label("Denoising strength")).to_have_value("0.75")
    expect(page.get_by_role("switch", name="Upscale and refine")).to_be_disabled()
    expect(page.get_by_label("Upscale by")).to_be_hidden()
    assert page.eval_on_selector("#init-thumb", "img => [img.naturalWidth, img.naturalHeight]") == list(INIT_SIZE)
    assert page.eval_on_selector("#mask", "canvas => [canvas.width, canvas.height]") == list(INIT_SIZE)

    # 3. Every control of the image by keyboard, in order, each with a visible focus ring.
    assert tab_order(page, "init_images", "denoising_strength") == [
        "init-remove", "mask_brush", "mask-whole", "mask-centre", "mask-clear", "inpainting_mask_invert",
        "denoising_strength"]
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#denoising_strength_value")).to_have_text("0.60")
    mask_state = page.locator("#mask-state")
    page.get_by_role("button", name="Mask: whole image").focus()
    page.keyboard.press("Enter")
    expect(mask_state).to_contain_text("Mask painted: the painted part is redrawn")
    page.get_by_role("button", name="Clear mask").focus()
    page.keyboard.press("Enter")
    expect(mask_state).to_contain_text("No mask")

    # 4. A stroke with the pointer across the middle of the image (pointerdown, moves, pointerup).
    box = page.locator("#mask").bounding_box()
    assert box["width"] >= 250  # a small image is shown large enough to paint on
    middle = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.3, middle)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, middle, steps=6)
    page.mouse.up()
    expect(mask_state).to_contain_text("Mask painted")

    # 5. Generate: the request is A1111's img2img with an inpainting mask.
    page.select_option("#sampler_name", "Euler")
    generate(page, steps="4", seed="4321")
    expect(page.locator("#current")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    sent = last_request(desktop)
    assert sent["init_images"] == ["data:image/png;base64," + base64.b64encode(init).decode()]
    assert (sent["denoising_strength"], sent["inpainting_mask_invert"]) == (0.6, 0)
    assert (sent["width"], sent["height"]) == INIT_SIZE
    assert "enable_hr" not in sent  # switched on before the upload, but not for img2img
    mask = data_url_image(sent["mask"])
    assert mask.size == INIT_SIZE  # the init image's size, not the canvas's size on screen
    grey = mask.convert("L")
    assert set(grey.getdata()) == {0, 255}  # black and white only
    assert grey.getpixel((48, 32)) == 255  # under the stroke
    for untouched in ((2, 2), (93, 61), (10, 32), (85, 32), (48, 8), (48, 56)):
        assert grey.getpixel(untouched) == 0, untouched
    expect(meta_value(page, "Mode")).to_have_text("Inpaint")
    expect(meta_value(page, "Size")).to_have_text("96 × 64")

    # 6. Inverted, then removed: the next request is text to image with the hires fix again.
    page.get_by_label("Invert: redraw what is not painted").check()
    expect(mask_state).to_contain_text("what is not painted is redrawn")
    page.get_by_role("button", name="Remove image").click()
    expect(page.get_by_label("Denoising strength")).to_be_hidden()
    expect(page.get_by_label("Image for img2img")).to_be_focused()
    expect(page.get_by_label("Upscale by")).to_be_visible()
    generate(page, width="64", height="64", steps="2")
    expect(page.locator("#history li")).to_have_count(1, timeout=GENERATION_TIMEOUT_MS)  # the second result
    sent = last_request(desktop)
    assert not {"init_images", "mask", "denoising_strength"} & set(sent)
    assert (sent["enable_hr"], sent["hr_scale"], sent["hr_upscaler"]) == (True, 2, "Latent")
    expect(meta_value(page, "Mode")).to_have_text("Text to image, hires fix × 2")
    assert not_yet_routes(desktop.errors) == []


def not_yet_routes(errors: list[str]) -> list[str]:
    """The console errors, less the failed loads of the gateway's upscaler lists, which the page asks
    for when the hires fix is switched on (and falls back to "Latent" without): 404 until the list
    routes of issue 15 (wt/lists) are merged, 503 for latent-upscale-modes until the workers' route
    (wt/hires) is; with both, this filter removes nothing."""
    lists = ("/sdapi/v1/upscalers]", "/sdapi/v1/latent-upscale-modes]")
    return [error for error in errors if not (error.startswith("Failed to load resource: the server responded")
                                              and error.endswith(lists))]


def test_a_dropped_image_and_a_mask_by_touch_and_pen_on_a_phone(phone: Watched, gateway, tmp_path: Path) -> None:
    page = phone.page
    page.goto(gateway.url)
    expect(page.locator("#sampler_name option[value='Euler']")).to_have_count(1)
    # A file that is not an image: refused by the page, naming the field.
    (tmp_path / "notes.txt").write_text("not an image")
    page.get_by_label("Image for img2img").set_input_files(tmp_path / "notes.txt")
    expect(page.locator("#alert")).to_contain_text("Image for img2img: notes.txt is not a PNG, JPEG or WebP image")
    expect(page.get_by_label("Image for img2img")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Denoising strength")).to_be_hidden()

    # A PNG dropped on the drop zone (a DataTransfer with the file, as a drag from the desktop gives).
    png = base64.b64encode(write_init_image(tmp_path / "dropped.png")).decode()
    page.evaluate("""(png) => {
        const bytes = Uint8Array.from(atob(png), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "dropped.png", {type: "image/png"}));
        const zone = document.getElementById("init-drop");
        zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", png)
    expect(page.locator("#init-thumb")).to_have_attribute("alt", re.compile(r"dropped\.png, 96 × 64$"))
    expect(page.locator("#init-thumb")).to_have_js_property("complete", True)
    expect(page.locator("#alert")).to_be_empty()
    no_horizontal_overflow(page)

    # A finger taps the top left corner (a touch: the page must not scroll instead), a pen draws a
    # line along the bottom.
    canvas = page.locator("#mask")
    assert canvas.evaluate("c => getComputedStyle(c).touchAction") == "none"
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    page.touchscreen.tap(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.15)
    expect(page.locator("#mask-state")).to_contain_text("Mask painted")
    y = box["y"] + box["height"] * 0.85
    pen = {"pointerId": 7, "pointerType": "pen", "isPrimary": True, "button": 0, "buttons": 1, "pressure": 0.5}
    canvas.dispatch_event("pointerdown", {**pen, "clientX": box["x"] + box["width"] * 0.4, "clientY": y})
    for fraction in (0.5, 0.6, 0.7):
        canvas.dispatch_event("pointermove", {**pen, "clientX": box["x"] + box["width"] * fraction, "clientY": y})
    canvas.dispatch_event("pointerup", {**pen, "buttons": 0, "clientX": box["x"] + box["width"] * 0.7, "clientY": y})

    page.get_by_label("Steps").fill("2")
    page.get_by_role("button", name="Generate").tap()
    expect(page.locator("#current")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    mask = data_url_image(last_request(phone)["mask"]).convert("L")
    assert mask.size == INIT_SIZE
    assert mask.getpixel((10, 10)) == 255  # the tap
    assert [mask.getpixel((x, 54)) for x in (30, 48, 66, 80)] == [0, 255, 255, 0]  # the pen's line, 0.4 to 0.7
    assert mask.getpixel((48, 32)) == 0
    assert phone.errors == []


def test_inpainting_through_the_pool_keeps_the_unmasked_pixels(desktop: Watched, gateway, tmp_path: Path) -> None:
    # Needs the worker's img2img (branch wt/img2img) and the gateway's forwarding of init_images on
    # /v1/ws (wt/gateway): checked passing with both merged; before them, the gateway makes a txt2img.
    page = desktop.page
    page.goto(gateway.url)
    expect(page.locator("#sampler_name option[value='Euler']")).to_have_count(1)
    upload(page, tmp_path)
    start = Image.open(tmp_path / "start.png").convert("RGB")
    page.get_by_label("Denoising strength").focus()
    for _ in range(3):
        page.keyboard.press("ArrowLeft")  # 0.75 -> 0.6
    page.get_by_role("button", name="Mask: centre").focus()  # the keyboard's mask: the middle half
    page.keyboard.press("Enter")
    page.select_option("#sampler_name", "Euler")
    generate(page, steps="4", seed="99")
    expect(page.locator("#current")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    done = [event for event in desktop.events if event["event"] == "done"][-1]
    result = Image.open(io.BytesIO(base64.b64decode(done["image"]))).convert("RGB")
    assert result.size == INIT_SIZE
    # What the worker did: img2img at 0.6 with a mask (A1111's infotext), the result shown with it.
    assert done["info"]["denoising_strength"] == 0.6
    assert "Denoising strength: 0.6" in done["info"]["infotexts"][0]
    assert "Mask blur: 4" in done["info"]["infotexts"][0]
    expect(meta_value(page, "Denoising strength")).to_have_text("0.6")
    # Outside the (blurred) mask the pixels are the uploaded image's; inside they were redrawn.
    mask = data_url_image(last_request(desktop)["mask"]).convert("L")
    assert mask.getpixel((48, 32)) == 255 and mask.getpixel((10, 10)) == 0
    far = [(x, y) for y in range(INIT_SIZE[1]) for x in range(INIT_SIZE[0]) if x < 12 or x >= 84 or y < 6 or y >= 58]
    assert max(max(abs(a - b) for a, b in zip(result.getpixel(p), start.getpixel(p), strict=True)) for p in far) <= 1
    inside = [(x, y) for y in range(24, 40) for x in range(36, 60)]
    changed = sum(sum(abs(a - b) for a, b in zip(result.getpixel(p), start.getpixel(p), strict=True)) for p in inside)
    assert changed / (3 * len(inside)) > 5
    assert desktop.errors == []


def test_hires_fix_through_the_pool(desktop: Watched, gateway) -> None:
    # Needs the worker's hires fix (branch wt/hires): checked passing with it merged.
    page = desktop.page
    page.goto(gateway.url)
    expect(page.locator("#sampler_name option[value='Euler']")).to_have_count(1)
    page.get_by_role("switch", name="Upscale and refine").check()
    page.select_option("#sampler_name", "Euler")
    generate(page, width="64", height="64", steps="2", hr_scale="2")
    expect(page.locator("#current")).to_be_visible(timeout=GENERATION_TIMEOUT_MS)
    assert page.eval_on_selector("#result-image", "img => [img.naturalWidth, img.naturalHeight]") == [128, 128]
    expect(meta_value(page, "Size")).to_have_text("128 × 128")
    assert not_yet_routes(desktop.errors) == []
