"""Hostile inputs through the core: every pixel type, shape, layout and array kind.

Each input either gives valid labels (int32, non-negative, the input's shape
without channels; none for a constant image) or one ``ValueError`` that says
what is wrong.  Property-based (hypothesis) where a whole family of inputs
shares a property; example counts stay small because two CPU cores run the
whole suite.  Most cases run the bundled ``nuclei`` model on an image of four
disks the size it was trained on, so "valid" also means "the four nuclei".
"""

from __future__ import annotations

import functools

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_unet.core.config import InferenceConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.axes import guess_axes, output_shape
from napari_unet.core.segmentation.preprocess import CLIP_RANGE, percentile_normalise
from napari_unet.core.segmentation.segmenter import Segmentation, segment_array
from tests.helpers import tiny_bundle as tiny_model

INTEGER_TYPES = [np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64]
FLOAT_TYPES = [np.float16, np.float32, np.float64]
PIXEL_TYPES = [np.bool_, *INTEGER_TYPES, *FLOAT_TYPES]
CPU = InferenceConfig(device="cpu")
SIZE_GIVEN = InferenceConfig(device="cpu", diameter=18.0)  # skips the size estimate (speed)
FEW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

DISK_CENTRES = ((20, 20), (20, 60), (44, 40), (46, 78))


def disks(shape: tuple[int, int] = (64, 96), radius: int = 9) -> np.ndarray:
    """A (Y, X) bool image of four separate disks about the bundled model's object size."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.zeros(shape, bool)
    for cy, cx in DISK_CENTRES:
        image |= (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
    return image


@functools.cache
def nuclei_model() -> ModelBundle:
    """The bundled model, loaded once (a plain function: hypothesis prints fixture arguments)."""
    return load_model(resolve_model("nuclei"))


@functools.cache
def reference(config: InferenceConfig = CPU) -> np.ndarray:
    """The bundled model's labels of the disk image as float32 0/1 (object size estimated unless given)."""
    labels = segment_array(disks().astype(np.float32), nuclei_model(), inference=config).labels
    assert labels.max() == 4 and all(labels[c] > 0 for c in DISK_CENTRES)
    return labels


def assert_valid(result: Segmentation, shape: tuple[int, ...], axes: str) -> None:
    assert result.axes == axes
    assert result.labels.shape == output_shape(axes, shape)
    assert result.labels.dtype == np.int32
    assert result.labels.min() >= 0


def code_levels(dtype: type, low: float | int, high: float | int, image: np.ndarray) -> np.ndarray:
    """``image`` (bool) written in ``dtype`` with background ``low`` and objects ``high``."""
    coded = np.full(image.shape, low, dtype=dtype)
    coded[image] = np.asarray(high, dtype=dtype)
    return coded


@st.composite
def two_levels(draw: st.DrawFn) -> tuple[type, object, object]:
    """A pixel type and two distinct values of it, anywhere in its range (limits included)."""
    dtype = draw(st.sampled_from([*INTEGER_TYPES, *FLOAT_TYPES]))
    values = hnp.from_dtype(np.dtype(dtype), allow_nan=False, allow_infinity=False, allow_subnormal=False)
    low, high = sorted(draw(st.lists(values, min_size=2, max_size=2, unique=True)))
    return dtype, low, high


@pytest.mark.slow
# -- pixel types and values ------------------------------------------------------------------
@FEW
@given(levels=two_levels(), non_finite=st.sampled_from([None, np.nan, np.inf, -np.inf]))
@example(levels=(np.int64, 2**40, 2**40 + 100), non_finite=None)  # float32 cannot tell these apart
@example(levels=(np.uint64, 0, np.iinfo(np.uint64).max), non_finite=None)
@example(levels=(np.float64, -np.finfo(np.float64).max, np.finfo(np.float64).max), non_finite=np.nan)
@example(levels=(np.float16, 0.0, 0.001), non_finite=np.inf)
def test_any_two_intensity_levels_give_the_same_objects(
    levels: tuple[type, object, object], non_finite: float | None
) -> None:
    """Objects brighter than their background are found whatever the type and values.

    Percentile normalisation maps any two levels to 0 and 1, so the labels
    equal the float32 reference exactly, also with NaN or +-Inf pixels in the
    background (they are ignored and read as background).
    """
    dtype, low, high = levels
    image = code_levels(dtype, low, high, disks())
    if non_finite is not None and np.issubdtype(dtype, np.floating):
        image[::7, ::5] = np.where(disks()[::7, ::5], image[::7, ::5], non_finite)
    result = segment_array(image, nuclei_model(), inference=CPU)
    assert_valid(result, image.shape, "YX")
    np.testing.assert_array_equal(result.labels, reference())


def test_bool_images_are_segmented() -> None:
    np.testing.assert_array_equal(segment_array(disks(), nuclei_model(), inference=CPU).labels, reference())


def test_negative_images_are_segmented() -> None:
    image = np.where(disks(), -1000.0, -5000.0).astype(np.float32)
    np.testing.assert_array_equal(segment_array(image, nuclei_model(), inference=CPU).labels, reference())


@st.composite
def constants(draw: st.DrawFn) -> tuple[type, object]:
    """A pixel type and any one value of it (NaN, +-Inf and the limits included)."""
    dtype = draw(st.sampled_from(PIXEL_TYPES))
    return dtype, draw(hnp.from_dtype(np.dtype(dtype)))


@pytest.mark.slow
@FEW
@given(
    constant=constants(),
    shape=st.sampled_from([(1, 1), (1, 40), (40, 1), (7, 9), (64, 96), (3, 40, 40), (40, 40, 3)]),
)
@example(constant=(np.float32, np.nan), shape=(64, 96))
@example(constant=(np.float64, -np.inf), shape=(64, 96))
@example(constant=(np.uint64, np.iinfo(np.uint64).max), shape=(64, 96))
@example(constant=(np.uint16, 0), shape=(64, 96))
def test_a_constant_image_has_no_objects(constant: tuple[type, object], shape: tuple[int, ...]) -> None:
    dtype, value = constant
    result = segment_array(np.full(shape, value, dtype), nuclei_model(), inference=CPU)
    assert_valid(result, shape, guess_axes(shape))
    assert not result.labels.any()


@pytest.mark.parametrize("hot", [1e4, 1e30, np.finfo(np.float32).max, -1e4, -np.finfo(np.float32).max])
def test_one_extreme_pixel_changes_no_object(hot: float) -> None:
    """Normalised values are clipped, so a hot (or cold) pixel is one bright (dark) pixel, not an object."""
    image = disks().astype(np.float32) * 100
    image[5, 5] = hot
    assert percentile_normalise(image).max() <= CLIP_RANGE[1]
    np.testing.assert_array_equal(segment_array(image, nuclei_model(), inference=CPU).labels, reference())


@FEW
@given(
    image=hnp.arrays(
        dtype=st.sampled_from(PIXEL_TYPES),
        shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=24),
    )
)
def test_arbitrary_pixels_give_valid_labels_without_warnings(image: np.ndarray) -> None:
    """Any values at all (NaN, Inf, the type's limits): valid labels, and no warning (warnings fail tests)."""
    result = segment_array(image, tiny_model(), inference=CPU)
    assert_valid(result, image.shape, "YX")
    normalised = percentile_normalise(image)
    assert np.isfinite(normalised).all()
    assert CLIP_RANGE[0] <= normalised.min() and normalised.max() <= CLIP_RANGE[1]


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((8, 8), np.complex64), "unsupported pixel type complex64"),
        (np.zeros((8, 8), object), "unsupported pixel type object"),
        (np.zeros((8, 8), "U3"), "unsupported pixel type <U3"),
        (np.zeros((8, 8), "datetime64[s]"), "unsupported pixel type datetime64"),
        (np.zeros((0, 8)), r"the image is empty: shape \(0, 8\)"),
        (np.zeros((3, 0, 8)), "the image is empty"),
        (np.zeros(8), "at least 2 dimensions"),
        (np.zeros((1,) * 8), "too many dimensions"),
    ],
)
def test_unusable_images_give_one_clear_error(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        segment_array(image, tiny_model(), inference=CPU)


@pytest.mark.parametrize(
    ("axes", "message"),
    [
        ("ZXY", "put X before Y"),
        ("YX", "do not match"),
        ("ZYY", "repeat a letter"),
        ("ZCY", "must include Y and X"),
    ],
)
def test_unusable_axes_give_one_clear_error(axes: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        segment_array(np.zeros((2, 16, 16)), tiny_model(), axes=axes, inference=CPU)


# -- shapes ----------------------------------------------------------------------------------
@FEW
@given(shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=40))
@example(shape=(1, 1))
@example(shape=(1, 300))
@example(shape=(300, 1))
@example(shape=(3, 5000))
def test_images_smaller_than_a_tile_or_thin_give_labels_of_their_shape(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 4096, shape, dtype=np.uint16)
    result = segment_array(image, nuclei_model(), inference=CPU)
    assert_valid(result, shape, "YX")


def test_a_long_strip_tiled_across_finds_every_nucleus() -> None:
    """Aspect ratio 1:100 over several default tiles: each disk is one object, none is cut at a seam."""
    strip = np.zeros((24, 2400), bool)
    yy, xx = np.mgrid[:24, :2400]
    centres = range(20, 2400, 40)
    for cx in centres:
        strip |= (yy - 12) ** 2 + (xx - cx) ** 2 <= 81
    labels = segment_array(strip.astype(np.uint8) * 200, nuclei_model(), inference=CPU).labels
    assert labels.shape == strip.shape
    ids = [labels[12, cx] for cx in centres]
    assert all(ids) and len(set(ids)) == len(ids) == labels.max()


@st.composite
def layouts(draw: st.DrawFn) -> tuple[str, tuple[int, ...]]:
    """Axes of a 2-D to 6-D image: stack axes of length 1-2 and maybe a channel axis, in any order."""
    stacks = draw(st.lists(st.sampled_from("ZTUV"), unique=True, max_size=4))
    channels = draw(st.sampled_from([0, 1, 2, 3, 4, 7]))
    others = [*stacks] + (["C"] if channels else [])
    # Y before X (the other order is refused, see test_unusable_axes_give_one_clear_error)
    order = draw(st.permutations([*others, "Y"]))
    x_after = draw(st.integers(order.index("Y") + 1, len(order)))
    axes = "".join([*order[:x_after], "X", *order[x_after:]])
    sizes = {a: draw(st.integers(1, 2)) for a in stacks}
    shape = tuple({"Y": 64, "X": 96, "C": channels}.get(a, sizes.get(a, 1)) for a in axes)
    return axes, shape


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(layout=layouts(), channel_with_objects=st.integers(0, 6))
def test_every_layout_finds_the_objects_in_every_plane(
    layout: tuple[str, tuple[int, ...]], channel_with_objects: int
) -> None:
    """2-D to 6-D, any axis order, 1-7 channels (RGB and RGBA included): each plane gives the reference.

    The disks are in all channels of RGB/RGBA (luminance) and in one channel
    otherwise (the mean of channels; constant channels do not move the percentiles).
    """
    axes, shape = layout
    channels = shape[axes.index("C")] if "C" in axes else 0
    # built as (stacks..., C, Y, X), then transposed to the layout's order
    canonical_axes = "".join(a for a in axes if a not in "CYX") + ("C" if channels else "") + "YX"
    canonical_shape = tuple(shape[axes.index(a)] for a in canonical_axes)
    image = np.zeros(canonical_shape, np.uint16)
    objects = disks().astype(np.uint16) * 1000
    if channels in (0, 3, 4):
        image[...] = objects
    else:
        image[..., channel_with_objects % channels, :, :] = objects
    if channels == 4:
        image[..., 3, :, :] = 65535  # opaque alpha
    image = image.transpose([canonical_axes.index(a) for a in axes])
    assert image.shape == shape

    result = segment_array(image, nuclei_model(), axes=axes, inference=SIZE_GIVEN)
    assert_valid(result, shape, axes)
    label_axes = axes.replace("C", "")
    per_plane = np.moveaxis(result.labels, [label_axes.index("Y"), label_axes.index("X")], [-2, -1])
    per_plane = per_plane.reshape(-1, 64, 96)
    ids_seen: set[int] = set()
    for plane in per_plane:
        np.testing.assert_array_equal(plane > 0, reference(SIZE_GIVEN) > 0)
        ids = set(np.unique(plane[plane > 0]).tolist())
        assert len(ids) == 4 and not ids & ids_seen  # planes are numbered apart
        ids_seen |= ids


# -- array kinds -----------------------------------------------------------------------------
def test_strided_dask_and_memmap_arrays_match_a_plain_copy(tmp_path) -> None:
    """Views with steps and negative strides, transposes, dask and memmap give the labels of a copy."""
    stack = np.stack([disks(), disks()[::-1]]).astype(np.uint16) * 900 + 50
    big = np.zeros((2, 128, 192, 2), np.uint16)
    big[:, ::2, ::2, 0] = stack
    views = {
        "steps": big[:, ::2, ::2, 0],
        "negative strides": stack[:, ::-1, ::-1],
        "transposed": np.ascontiguousarray(stack.transpose(0, 2, 1)).transpose(0, 2, 1),
        "fortran": np.asfortranarray(stack),
        "dask": da.from_array(stack, chunks=(1, 32, 40)),
    }
    memmap = np.lib.format.open_memmap(tmp_path / "stack.npy", mode="w+", dtype=np.uint16, shape=stack.shape)
    memmap[:] = stack
    memmap.flush()
    views["memmap"] = np.load(tmp_path / "stack.npy", mmap_mode="r")
    config = InferenceConfig(device="cpu", diameter=18.0)
    for name, view in views.items():
        expected = segment_array(np.array(view), nuclei_model(), axes="ZYX", inference=config).labels
        labels = segment_array(view, nuclei_model(), axes="ZYX", inference=config).labels
        assert labels.max() == 8, name
        np.testing.assert_array_equal(labels, expected, err_msg=name)


@pytest.mark.slow
@FEW
@given(
    image=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.float32, np.int16]),
        shape=st.tuples(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 16), st.integers(1, 16)).map(
            lambda t: (*t[0], t[1], t[2])
        ),
    ),
    step=st.integers(1, 3),
)
def test_any_view_equals_its_copy(image: np.ndarray, step: int) -> None:
    view = image[..., ::step, ::-step]
    axes = guess_axes(view.shape)
    expected = segment_array(np.ascontiguousarray(view), tiny_model(), inference=CPU).labels
    result = segment_array(view, tiny_model(), inference=CPU)
    assert_valid(result, view.shape, axes)
    np.testing.assert_array_equal(result.labels, expected)
