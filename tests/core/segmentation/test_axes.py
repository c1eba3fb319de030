import dask.array as da
import numpy as np
import pytest

from napari_unet.core.segmentation.axes import (
    check_pixel_type,
    guess_axes,
    normalise_axes,
    output_axes,
    output_shape,
    plane_indices,
    plane_order,
    plane_selector,
    read_plane,
    stack_axes,
)


def test_guess_axes_and_overrides() -> None:
    assert guess_axes((512, 512)) == "YX"
    assert guess_axes((10, 512, 512)) == "ZYX"
    assert guess_axes((512, 512, 3)) == "YXC"
    assert guess_axes((5, 10, 512, 512)) == "TZYX"
    assert normalise_axes("qyx", (3, 4, 5)) == "ZYX"
    assert normalise_axes("YXS", (4, 5, 3)) == "YXC"
    with pytest.raises(ValueError, match="do not match"):
        normalise_axes("YX", (3, 4, 5))
    with pytest.raises(ValueError, match="must include Y and X"):
        normalise_axes("ZCY", (3, 4, 5))


def test_a_small_last_axis_is_colour_only_on_a_real_plane() -> None:
    assert guess_axes((512, 512, 4)) == "YXC"
    assert guess_axes((4, 4, 3)) == "ZYX"  # a 4 x 4 "plane" with 3 samples is more likely a tiny stack
    assert guess_axes((2, 3, 40, 30, 3)) == "TZYXC"
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        guess_axes((10,))
    with pytest.raises(ValueError, match="give axes explicitly"):
        guess_axes((2,) * 6 + (40, 30))


def test_normalise_axes_names_unnamed_stacks_and_refuses_impossible_layouts() -> None:
    assert normalise_axes("QQQQYX", (2, 2, 2, 2, 8, 8)) == "ZTUVYX"
    assert normalise_axes("IZYX", (2, 3, 8, 8)) == "TZYX"  # Z is taken: the sequence becomes T
    for axes, shape, reason in [
        ("ZZX", (2, 3, 4), "repeat a letter"),
        ("XY", (4, 5), "put X before Y"),
        ("ZYX", (0, 4, 5), "empty"),
    ]:
        with pytest.raises(ValueError, match=reason):
            normalise_axes(axes, shape)


def test_labels_drop_the_channel_axis_and_planes_walk_the_stack_axes_in_order() -> None:
    assert stack_axes("TZCYX") == "TZ"
    assert output_axes("TZCYX") == "TZYX"
    assert output_shape("TZCYX", (2, 3, 4, 8, 9)) == (2, 3, 8, 9)
    assert list(plane_indices("TZCYX", (2, 3, 4, 8, 9))) == [(t, z) for t in range(2) for z in range(3)]
    assert list(plane_indices("YXC", (8, 9, 3))) == [()]
    assert plane_selector("TZCYX", (1, 2)) == (1, 2, slice(None), slice(None), slice(None))
    assert plane_order("YXC") == (2, 0, 1) and plane_order("YX") == (0, 1)


def test_read_plane_gives_channels_first() -> None:
    stack = np.arange(2 * 4 * 5 * 3).reshape(2, 4, 5, 3)
    plane = read_plane(stack, "ZYXC", (1,))
    assert plane.shape == (3, 4, 5)
    np.testing.assert_array_equal(plane[2], stack[1, :, :, 2])


def test_read_plane_without_channels_is_two_dimensional_and_reads_lazy_arrays() -> None:
    stack = np.arange(3 * 2 * 4 * 5).reshape(3, 2, 4, 5)
    plane = read_plane(da.from_array(stack, chunks=(1, 1, 4, 5)), "TZYX", (2, 1))
    assert isinstance(plane, np.ndarray) and plane.shape == (4, 5)
    np.testing.assert_array_equal(plane, stack[2, 1])
    np.testing.assert_array_equal(read_plane(stack[0, 0], "YX", ()), stack[0, 0])


@pytest.mark.parametrize("dtype", [bool, np.uint8, np.int16, np.uint64, np.float16, np.float64])
def test_bool_integer_and_float_pixels_are_accepted(dtype: type) -> None:
    check_pixel_type(np.dtype(dtype))


@pytest.mark.parametrize("dtype", ["complex64", "U3", "datetime64[s]", "object", "V4"])
def test_other_pixel_types_are_refused_with_the_reason(dtype: str) -> None:
    with pytest.raises(
        ValueError, match=r"unsupported pixel type .*: images must hold bool, integer or float"
    ):
        check_pixel_type(np.dtype(dtype))
