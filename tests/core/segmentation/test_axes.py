import dask.array as da
import numpy as np

from napari_unet.core.segmentation.axes import read_plane


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
