"""Batched preprocessing and augmentation (osrkit.data.transforms) on tiny tensors, against hand-worked
values, PIL, numpy and the geometry of the crop each sample receives."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from osrkit.data.transforms import BatchAugment, make_augment, normalize, resize_uint8

# ---------------------------------------------------------------- resize


def test_resize_upsamples_2x2_to_4x4_bilinearly():
    """Separable bilinear with half-pixel centres: [a, b] -> [a, (3a+b)/4, (a+3b)/4, b], rounded."""
    x = torch.tensor([[[[0, 200], [100, 40]]]], dtype=torch.uint8)
    expected = [[0, 50, 150, 200], [25, 59, 126, 160], [75, 76, 79, 80], [100, 85, 55, 40]]
    out = resize_uint8(x, 4)
    assert out.dtype == torch.uint8
    assert out[0, 0].tolist() == expected


def _pil_resize(x: torch.Tensor, size: int) -> np.ndarray:
    return np.stack([np.stack([np.asarray(Image.fromarray(img.numpy()).resize((size, size), Image.BILINEAR))
                               for img in sample]) for sample in x])


@pytest.mark.parametrize("shape", [(2, 3, 4, 6), (2, 3, 6, 4), (1, 4, 4, 6), (1, 4, 6, 4), (2, 3, 13, 9)],
                         ids=["height-is-size", "width-is-size", "channels-and-height-are-size",
                              "channels-and-width-are-size", "both-differ"])
def test_resize_matches_pil_whenever_either_side_differs(shape):
    size = 4 if shape != (2, 3, 13, 9) else 5
    x = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = resize_uint8(x, size)
    assert out.shape == (shape[0], shape[1], size, size) and out.dtype == torch.uint8
    # torchvision's integer antialias and PIL's can differ by one grey level
    assert np.abs(out.numpy().astype(int) - _pil_resize(x, size)).max() <= 1


def test_resize_a_single_image_without_batch_dimension():
    """(C, H, W) works too (torchvision resizes the last two dimensions): width already right, height not."""
    x = torch.randint(0, 256, (3, 6, 4), generator=torch.Generator().manual_seed(6), dtype=torch.uint8)
    out = resize_uint8(x, 4)
    assert out.shape == (3, 4, 4)
    assert np.abs(out.numpy().astype(int) - _pil_resize(x[None], 4)[0]).max() <= 1


def test_resize_to_the_current_size_returns_the_images_unchanged():
    x = torch.randint(0, 256, (2, 3, 5, 5), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    assert resize_uint8(x, 5) is x


# ---------------------------------------------------------------- normalize

MEAN, STD = [0.5, 0.25, 0.1], [0.2, 0.5, 0.25]


def test_normalize_uint8_is_scaled_to_unit_range_then_standardised_per_channel():
    x = torch.randint(0, 256, (2, 3, 2, 3), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    out = normalize(x, MEAN, STD)
    ref = (x.numpy() / 255.0 - np.array(MEAN)[None, :, None, None]) / np.array(STD)[None, :, None, None]
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


def test_normalize_float_input_is_taken_as_unit_range_and_left_untouched():
    x = torch.rand(2, 3, 2, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    before = x.clone()
    out = normalize(x, MEAN, STD)
    ref = (before.numpy() - np.array(MEAN)[None, :, None, None]) / np.array(STD)[None, :, None, None]
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert torch.equal(x, before)


def test_normalize_stays_float32_under_a_float64_default_dtype():
    x = torch.randint(0, 256, (1, 3, 2, 2), generator=torch.Generator().manual_seed(4), dtype=torch.uint8)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        out = normalize(x, MEAN, STD)
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == torch.float32


def test_normalize_builds_mean_and_std_on_the_images_device():
    """Under another default device (meta here) the constants still follow the images (CPU)."""
    x = torch.randint(0, 256, (1, 3, 2, 2), generator=torch.Generator().manual_seed(5), dtype=torch.uint8)
    with torch.device("meta"):
        out = normalize(x, MEAN, STD)
    ref = (x.numpy() / 255.0 - np.array(MEAN)[None, :, None, None]) / np.array(STD)[None, :, None, None]
    assert out.device.type == "cpu"
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- augmentation


def test_make_augment_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"^unknown augmentation 'rotate'; choose one of none, crop, crop-flip$"):
        make_augment("rotate")


def test_augment_none_returns_the_batch_itself():
    aug = make_augment("none")
    x = torch.rand(2, 3, 4, 4)
    assert not aug.active
    assert aug(x, torch.Generator().manual_seed(0)) is x


def test_augment_active_when_cropping_or_flipping():
    assert BatchAugment(crop_scale=(0.5, 1.0), flip=False).active
    assert BatchAugment(crop_scale=None, flip=True).active
    assert BatchAugment().active and BatchAugment().crop_scale == (0.7, 1.0) and not BatchAugment().flip


def test_full_area_crop_without_flip_is_the_identity():
    x = torch.rand(3, 2, 5, 7, generator=torch.Generator().manual_seed(4))
    out = BatchAugment(crop_scale=(1.0, 1.0), flip=False)(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("area", [1.5, 61.0])
def test_crop_scale_above_one_is_capped_at_the_whole_image(area):
    """The crop never zooms out past the image: any area above 1 samples exactly the whole image (in
    float32 sqrt(area / exp(log area)) is 1 + 1 ulp at 61: the cap must hold there too)."""
    x = torch.rand(4, 2, 5, 7, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    out = BatchAugment(crop_scale=(area, area), flip=False)(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)


def test_crops_never_read_outside_the_image():
    """Border padding: a constant image stays constant, edge pixels included, whatever the crop and flip."""
    x = torch.full((50, 1, 6, 6), 0.75, dtype=torch.float64)
    out = make_augment("crop-flip")(x, torch.Generator().manual_seed(9))
    torch.testing.assert_close(out, x, atol=1e-12, rtol=0)


def test_augment_emits_no_warnings():
    """align_corners is given explicitly (torch warns when affine_grid / grid_sample fall back to the default)."""
    x = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(10))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_augment("crop-flip")(x, torch.Generator().manual_seed(0))
    assert [str(w.message) for w in caught] == []


def test_augment_keeps_the_batch_on_its_device():
    """The sampling grid is moved to the batch's device (meta here, standing in for an accelerator)."""
    x = torch.empty(3, 2, 5, 5, device="meta")
    out = make_augment("crop-flip")(x, torch.Generator().manual_seed(0))
    assert out.device == x.device and out.shape == x.shape


W = 16


def _ramps(n: int, dtype=torch.float64) -> torch.Tensor:
    """Channel 0 = column index, channel 1 = row index: bilinear sampling reads back the sampled coordinate."""
    cols = torch.arange(W, dtype=dtype).expand(W, W)
    return torch.stack([cols, cols.T]).expand(n, 2, W, W).clone()


def _affine(out: torch.Tensor):
    """Per sample (scale, offset) on x and y in normalised coordinates (align_corners=False), recovered from
    the sampled coordinates of interior pixels: u_j = ((s (2j+1)/W - s + t + 1) W - 1) / 2."""
    j = np.arange(1, W - 1)
    res = []
    for axis_vals in (out[:, 0, W // 2, 1:-1], out[:, 1, 1:-1, W // 2]):
        u = axis_vals.double().numpy()
        s = np.polyfit(j, u.T, 1)[0]  # slope per sample
        centre = u.mean(1) + s * ((W - 1) / 2 - j.mean())  # u at the image centre
        t = (2 * centre + 1) / W - 1
        res += [s, t]
        # the ramp is reproduced exactly: no clamping or distortion inside
        np.testing.assert_allclose(u, centre[:, None] + s[:, None] * (j - (W - 1) / 2), atol=1e-9)
    return res


def _check_crop_geometry(sx, tx, sy, ty, lo, hi):
    area = np.abs(sx) * sy
    ratio = np.abs(sx) / sy
    assert (area >= lo - 1e-9).all() and (area <= hi + 1e-9).all()
    assert area.min() < lo + 0.02 and area.max() > hi - 0.02  # the whole range is drawn
    assert (ratio >= 3 / 4 - 1e-9).all() and (ratio <= 4 / 3 + 1e-9).all()
    assert ratio.min() < 0.8 and ratio.max() > 1.25
    # the crop window stays inside the image and is placed anywhere in it
    for s, t in ((np.abs(sx), tx), (sy, ty)):
        assert (np.abs(t) <= 1 - s + 1e-9).all()
        assert (t < 0).any() and (t > 0).any()
        assert (np.abs(t) / np.maximum(1 - s, 1e-12)).max() > 0.9


def test_crop_draws_area_aspect_and_position_within_bounds():
    out = make_augment("crop")(_ramps(300), torch.Generator().manual_seed(0))
    assert out.shape == (300, 2, W, W) and out.dtype == torch.float64
    sx, tx, sy, ty = _affine(out)
    assert (sx > 0).all()  # never mirrored
    _check_crop_geometry(sx, tx, sy, ty, 0.7, 1.0)


def test_crop_flip_mirrors_about_half_and_keeps_the_crop_bounds():
    out = make_augment("crop-flip")(_ramps(300), torch.Generator().manual_seed(1))
    sx, tx, sy, ty = _affine(out)
    assert 0.35 < (sx < 0).mean() < 0.65
    assert (sy > 0).all()
    _check_crop_geometry(sx, tx, sy, ty, 0.7, 1.0)


def test_custom_crop_scale_bounds_the_area():
    out = BatchAugment(crop_scale=(0.3, 0.5))(_ramps(300), torch.Generator().manual_seed(2))
    sx, tx, sy, ty = _affine(out)
    area, ratio = sx * sy, sx / sy
    assert (area >= 0.3 - 1e-9).all() and (area <= 0.5 + 1e-9).all()
    assert area.min() < 0.32 and area.max() > 0.48
    assert (ratio >= 3 / 4 - 1e-9).all() and (ratio <= 4 / 3 + 1e-9).all()
    assert (np.abs(tx) <= 1 - sx + 1e-9).all() and (np.abs(ty) <= 1 - sy + 1e-9).all()


def test_flip_only_gives_each_image_or_its_exact_mirror():
    x = torch.rand(40, 3, 5, 6, generator=torch.Generator().manual_seed(5))
    out = BatchAugment(crop_scale=None, flip=True)(x, torch.Generator().manual_seed(3))
    same = torch.isclose(out, x, atol=1e-6).flatten(1).all(1)
    mirrored = torch.isclose(out, x.flip(-1), atol=1e-6).flatten(1).all(1)
    assert (same ^ mirrored).all()
    assert 10 < int(mirrored.sum()) < 30


def test_augment_float32_keeps_dtype_and_randomness_comes_from_the_generator_only():
    x = _ramps(8, torch.float32)
    aug = make_augment("crop-flip")
    torch.manual_seed(0)
    a = aug(x, torch.Generator().manual_seed(7))
    torch.manual_seed(123)
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # float32 sampling reads the ramps as float64 does
    a64 = aug(_ramps(8), torch.Generator().manual_seed(7))
    torch.testing.assert_close(a.double(), a64, atol=1e-4, rtol=0)
