"""A1111's img2img image preparation, pure (no model): resize modes, masks, "only masked", fill, overlay.

Expected pixels come from the rules A1111 documents (`images.resize_image`, `masking`), on images
chosen so that the rules give exact values."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdxlpool.api.generation import Img2ImgParams
from sdxlpool.worker.img2img_inputs import (
    apply_overlay,
    binary_mask,
    blur_mask,
    crop_region,
    expand_crop_region,
    fill_masked,
    flatten,
    prepare_inputs,
    resize_image,
)
from tests.worker.img2img_inputs import box_mask, gradient


def rows_image(width: int, height: int) -> Image.Image:
    """Every pixel (x, y) is (x, y, 7): each row and column distinct."""
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 10, y * 10, np.full_like(x, 7)], axis=-1).astype(np.uint8), "RGB")


def arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def params(**fields: object) -> Img2ImgParams:
    base: dict = {"image_count": 1, "denoising_strength": 0.75, "resize_mode": 0, "inpainting": True}
    return Img2ImgParams(**{**base, **fields})  # type: ignore[arg-type]


# -- resize modes -------------------------------------------------------------------------------------

def test_just_resize_gives_the_size_and_keeps_a_flat_colour() -> None:
    out = resize_image(0, Image.new("RGB", (40, 20), (10, 200, 30)), 64, 48)
    assert out.size == (64, 48)
    assert (arr(out) == (10, 200, 30)).all()


def test_crop_and_resize_cuts_the_middle() -> None:
    source = rows_image(8, 4)
    out = resize_image(1, source, 4, 4)  # covers at 8x4, the middle 4 columns kept
    assert np.array_equal(arr(out), arr(source)[:, 2:6])


def test_resize_and_fill_stretches_the_edge_rows() -> None:
    source = rows_image(8, 4)
    out = arr(resize_image(2, source, 8, 8))  # fits at 8x4, centred: 2 rows of band above and below
    src = arr(source)
    assert np.array_equal(out[2:6], src)
    assert np.array_equal(out[0], src[0]) and np.array_equal(out[1], src[0])
    assert np.array_equal(out[6], src[3]) and np.array_equal(out[7], src[3])


def test_resize_and_fill_stretches_the_edge_columns() -> None:
    source = rows_image(4, 8)
    out = arr(resize_image(2, source, 8, 8))
    src = arr(source)
    assert np.array_equal(out[:, 2:6], src)
    for column in (0, 1):
        assert np.array_equal(out[:, column], src[:, 0])
    for column in (6, 7):
        assert np.array_equal(out[:, column], src[:, 3])


def test_latent_upscale_leaves_the_pixels_alone() -> None:
    image = gradient(40, 24)
    inputs = prepare_inputs([image], None, params(resize_mode=3, inpainting=False), 64, 64)
    assert inputs.latent_upscale and inputs.images[0].size == (40, 24)
    assert np.array_equal(arr(inputs.images[0]), arr(image))


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_plain_img2img_images_are_at_the_job_size(mode: int) -> None:
    inputs = prepare_inputs([gradient(50, 30), gradient(20, 70)], None, params(resize_mode=mode, inpainting=False),
                            64, 48)
    assert [im.size for im in inputs.images] == [(64, 48), (64, 48)]
    assert not inputs.latent_upscale and inputs.mask is None and inputs.overlays == ()
    assert inputs.generation_params == {"Denoising strength": 0.75}


def test_transparency_is_flattened_over_white() -> None:
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((1, 1), (10, 20, 30, 255))
    flat = arr(flatten(rgba))
    assert tuple(flat[1, 1]) == (10, 20, 30) and tuple(flat[0, 0]) == (255, 255, 255)


# -- masks ----------------------------------------------------------------------------------------------

def test_rgba_mask_is_read_from_its_alpha() -> None:
    mask = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    for x, alpha in enumerate((0, 100, 129, 255)):
        mask.putpixel((x, 0), (0, 0, 0, alpha))
    assert list(binary_mask(mask).getdata()) == [0, 0, 255, 255]
    assert list(binary_mask(mask, round_=False).getdata()) == [0, 100, 129, 255]
    assert list(binary_mask(Image.new("RGB", (2, 1), (255, 255, 255))).getdata()) == [255, 255]


def test_blur_is_a_gaussian_along_each_axis_separately() -> None:
    impulse = Image.new("L", (31, 31), 0)
    impulse.putpixel((15, 15), 255)
    sigma = 2  # kernel 2 * int(2.5 * 2 + 0.5) + 1 = 11 taps
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * sigma * sigma))
    expected = np.rint(255 * taps / taps.sum())
    only_x = np.asarray(blur_mask(impulse, sigma, 0), dtype=np.float64)
    assert np.array_equal(only_x[15, 10:21], expected) and only_x[15, :10].sum() == 0
    assert only_x[14].sum() == 0 and only_x[16].sum() == 0  # nothing spread along y
    only_y = np.asarray(blur_mask(impulse, 0, sigma), dtype=np.float64)
    assert np.array_equal(only_y[10:21, 15], expected) and only_y[:, 14].sum() == 0
    assert np.array_equal(np.asarray(blur_mask(impulse, 0, 0)), np.asarray(impulse))


def test_crop_region_is_the_mask_box_grown_by_the_padding() -> None:
    mask = box_mask(64, 64, (20, 30, 40, 35))
    assert crop_region(mask, 0) == (20, 30, 40, 35)
    assert crop_region(mask, 8) == (12, 22, 48, 43)
    assert crop_region(mask, 100) == (0, 0, 64, 64)
    assert crop_region(Image.new("L", (8, 8)), 4) is None


@pytest.mark.parametrize(
    ("box", "size", "image", "expected"),
    [
        # A1111's own example: a 128x32 mask for 512x512 processing becomes 128x128 around its centre.
        pytest.param((100, 200, 228, 232), (512, 512), (512, 512), (100, 152, 228, 280), id="a1111-example"),
        pytest.param((0, 500, 128, 512), (512, 512), (512, 512), (0, 384, 128, 512), id="shifted-up-from-the-edge"),
        pytest.param((2, 10, 12, 40), (512, 512), (512, 512), (0, 10, 30, 40), id="widened-shifted-right"),
        pytest.param((0, 0, 64, 16), (64, 64), (64, 32), (0, 0, 64, 32), id="clipped-to-a-small-image"),
    ],
)
def test_expand_crop_region(box, size, image, expected) -> None:
    assert expand_crop_region(box, *size, *image) == expected


def test_fill_paints_the_hole_from_its_surroundings_and_keeps_the_rest() -> None:
    image = Image.new("RGB", (64, 64), (200, 20, 20))
    image.paste((20, 20, 200), (32, 0, 64, 64))  # red left, blue right
    hole = box_mask(64, 64, (4, 24, 20, 40))  # in the red half
    filled = arr(fill_masked(image, hole))
    assert np.array_equal(filled[:, 32:], arr(image)[:, 32:])
    assert np.array_equal(filled[:24], arr(image)[:24])
    inside = filled[24:40, 4:20].reshape(-1, 3).mean(axis=0)
    assert inside[0] > 150 and inside[2] < 70  # red, from around it


# -- inpainting preparation and the overlay -------------------------------------------------------------

def test_whole_picture_inpainting() -> None:
    image = gradient(64, 64)
    inputs = prepare_inputs([image], box_mask(64, 64, (20, 20, 44, 44)), params(inpaint_full_res=False), 64, 64)
    assert inputs.paste_to is None and inputs.mask.size == (64, 64)
    assert inputs.latent_mask.shape == (8, 8) and set(np.unique(inputs.latent_mask)) == {0.0, 1.0}
    assert inputs.generation_params == {"Denoising strength": 0.75, "Mask blur": 4, "Masked content": "fill"}
    result = Image.new("RGB", (64, 64), (1, 2, 3))
    out = arr(apply_overlay(result, inputs, 0))
    blurred = np.asarray(blur_mask(box_mask(64, 64, (20, 20, 44, 44)), 4, 4))
    assert np.array_equal(out[blurred == 0], arr(image)[blurred == 0])  # outside the blurred mask: the init image
    assert (out[30:34, 30:34] == (1, 2, 3)).all()  # well inside: the result


def test_only_masked_inpainting_crops_processes_and_pastes_back() -> None:
    image = gradient(128, 96)
    mask = box_mask(128, 96, (60, 40, 70, 50))
    inputs = prepare_inputs([image], mask, params(inpaint_full_res=True, inpaint_full_res_padding=8, mask_blur_x=0,
                                                  mask_blur_y=0, inpainting_fill=1), 64, 32)
    # The box 60..70 x 40..50 grown by 8 is 52..78 x 32..58 (26x26), widened to 2:1 around its centre.
    assert inputs.paste_to == (39, 32, 52, 26)
    assert inputs.images[0].size == (64, 32) and inputs.overlays[0].size == (128, 96)
    assert inputs.generation_params == {"Denoising strength": 0.75, "Inpaint area": "Only masked",
                                        "Masked area padding": 8}
    out = arr(apply_overlay(Image.new("RGB", (64, 32), (1, 2, 3)), inputs, 0))
    outside = np.asarray(mask) == 0
    assert out.shape == (96, 128, 3)
    assert np.array_equal(out[outside], arr(image)[outside])
    assert (out[40:50, 60:70] == (1, 2, 3)).all()


def test_invert_repaints_what_the_mask_leaves_black() -> None:
    image = gradient(64, 64)
    inputs = prepare_inputs([image], box_mask(64, 64, (16, 16, 48, 48)),
                            params(inpaint_full_res=False, inpainting_mask_invert=True, mask_blur_x=0, mask_blur_y=0),
                            64, 64)
    assert inputs.generation_params["Mask mode"] == "Inpaint not masked"
    out = arr(apply_overlay(Image.new("RGB", (64, 64), (1, 2, 3)), inputs, 0))
    assert np.array_equal(out[16:48, 16:48], arr(image)[16:48, 16:48])
    assert (out[:8] == (1, 2, 3)).all()


def test_a_blank_mask_with_only_masked_is_plain_img2img() -> None:
    inputs = prepare_inputs([gradient(64, 64)], Image.new("L", (64, 64)), params(inpaint_full_res=True), 64, 64)
    assert inputs.mask is None and inputs.overlays == () and inputs.latent_mask is None


@pytest.mark.parametrize(("fill", "content"), [(0, "fill"), (1, None), (2, "latent noise"), (3, "latent nothing")])
def test_masked_content_infotext(fill: int, content: str | None) -> None:
    inputs = prepare_inputs([gradient(64, 64)], box_mask(64, 64, (8, 8, 24, 24)),
                            params(inpaint_full_res=False, inpainting_fill=fill), 64, 64)
    assert inputs.generation_params.get("Masked content") == content


def test_mask_blur_is_written_only_when_x_and_y_agree() -> None:
    inputs = prepare_inputs([gradient(64, 64)], box_mask(64, 64, (8, 8, 24, 24)),
                            params(inpaint_full_res=False, mask_blur_x=2, mask_blur_y=6), 64, 64)
    assert inputs.generation_params.get("Mask blur") is None
