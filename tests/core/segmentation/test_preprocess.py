import numpy as np
import pytest

from napari_unet.core.segmentation.preprocess import (
    CLIP_RANGE,
    match_channels,
    percentile_normalise,
    rescale,
    resize_to,
)


def test_percentiles_map_to_zero_and_one_per_channel() -> None:
    ramp = np.arange(10_000, dtype=np.uint16).reshape(100, 100)
    image = np.stack([ramp, ramp * 3 + 500])
    out = percentile_normalise(image, 1.0, 99.0)
    assert out.dtype == np.float32 and out.shape == image.shape
    for channel, raw in zip(out, image, strict=True):
        low, high = np.percentile(raw, [1.0, 99.0])
        assert channel[raw == round(low)].item() == pytest.approx(0.0, abs=1e-3)
        assert channel.max() == pytest.approx((raw.max() - low) / (high - low), rel=1e-5)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)  # a linear change of intensities changes nothing


def test_a_constant_image_becomes_zeros_and_non_finite_pixels_are_ignored() -> None:
    assert not percentile_normalise(np.full((8, 8), 7.0)).any()
    image = np.tile(np.linspace(0, 1, 50, dtype=np.float32), (50, 1))
    spoiled = image.copy()
    spoiled[0, :5] = [np.nan, np.inf, -np.inf, np.nan, np.inf]
    out = percentile_normalise(spoiled)
    assert np.isfinite(out).all() and (out[0, :5] == 0).all()
    np.testing.assert_allclose(out[1:], percentile_normalise(image)[1:], atol=0.02)


def test_a_hot_pixel_is_clipped() -> None:
    image = np.random.default_rng(0).normal(100, 10, (64, 64))
    image[5, 5], image[6, 6] = 1e30, -1e30
    out = percentile_normalise(image)
    assert out.min() == CLIP_RANGE[0] and out.max() == CLIP_RANGE[1]
    assert np.isfinite(out).all()


def test_large_integers_keep_their_precision() -> None:
    """In float32, 2**40 + 100 equals 2**40: such an image must not look constant."""
    image = (np.uint64(2**40) + np.arange(100, dtype=np.uint64)).reshape(10, 10)
    out = percentile_normalise(image, 0.0, 100.0)
    assert out.min() == 0.0 and out.max() == pytest.approx(1.0)
    assert len(np.unique(out)) == 100


def test_unsupported_pixels_are_refused() -> None:
    with pytest.raises(ValueError, match="unsupported pixel type complex64"):
        percentile_normalise(np.zeros((4, 4), np.complex64))


def test_a_one_channel_model_sees_colour_as_luminance_normalised_again() -> None:
    rgb = np.zeros((3, 20, 20), np.float32)
    rgb[2, 5:15, 5:15] = 1.0  # a blue object only
    grey = match_channels(rgb, 1)
    assert grey.shape == (1, 20, 20)
    assert grey[0, 10, 10] == pytest.approx(1.0) and grey[0, 0, 0] == pytest.approx(0.0)  # full contrast
    two = np.stack([rgb[2], np.zeros((20, 20), np.float32)])
    np.testing.assert_allclose(match_channels(two, 1), grey, atol=1e-6)  # other counts: the mean


def test_a_multi_channel_model_gets_one_channel_repeated_or_an_error() -> None:
    single = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    repeated = match_channels(single, 3)
    assert repeated.shape == (3, 8, 8) and all((c == single[0]).all() for c in repeated)
    assert match_channels(repeated, 3) is repeated
    with pytest.raises(ValueError, match="the model takes 3 channels but the image has 2"):
        match_channels(np.zeros((2, 8, 8), np.float32), 3)


def test_rescale_resizes_the_last_two_axes() -> None:
    image = np.random.default_rng(0).random((2, 30, 40)).astype(np.float32)
    assert rescale(image, 1.0) is image
    assert rescale(image, 0.5).shape == (2, 15, 20)
    assert rescale(image, 1.26).shape == (2, 38, 50)  # round(30 * 1.26), round(40 * 1.26)
    assert rescale(image, 0.001).shape == (2, 1, 1)  # at least one pixel
    assert resize_to(image, (30, 40)) is image


def test_nearest_neighbour_keeps_label_values_and_dtype() -> None:
    labels = np.zeros((20, 20), np.uint16)
    labels[2:10, 2:10] = 7
    labels[12:18, 12:18] = 65535
    bigger = rescale(labels, 2.0, order=0)
    assert bigger.dtype == np.uint16 and bigger.shape == (40, 40)
    assert set(np.unique(bigger)) == {0, 7, 65535}
    assert (bigger == 7).sum() == 4 * (labels == 7).sum()
    smooth = rescale(labels.astype(np.float32), 0.5, order=1)
    assert smooth.dtype == np.float32 and 0 < smooth.max() <= 65535
