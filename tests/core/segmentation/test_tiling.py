import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from napari_unet.core.segmentation.tiling import blend_ramp, predict_tiled, thread_pool, tile_layout


@given(
    size=st.integers(1, 300),
    tile=st.integers(16, 1024),
    overlap=st.integers(0, 200),
    multiple=st.sampled_from([1, 2, 8, 16]),
)
def test_tile_layout_covers_evenly_with_the_fewest_tiles(
    size: int, tile: int, overlap: int, multiple: int
) -> None:
    size *= multiple
    overlap = min(overlap, tile - 1)
    edge, starts = tile_layout(size, tile, overlap, multiple)
    units, most = size // multiple, max(1, -(-tile // multiple))
    assert edge % multiple == 0 and all(start % multiple == 0 for start in starts)
    assert starts[0] == 0 and starts[-1] + edge == size  # covers the image, no tile beyond it
    assert edge <= max(most * multiple, multiple) or len(starts) == 1
    if len(starts) > 1:
        shared = min(-(-overlap // multiple), most - 1) * multiple
        steps = np.diff(starts)
        assert steps.min() > 0 and edge - steps.max() >= shared  # every neighbour overlaps enough
        assert steps.max() - steps.min() <= multiple  # spread evenly
        assert len(starts) == -(-(units - shared // multiple) // (most - shared // multiple))  # fewest


def test_blend_ramps_of_neighbours_sum_to_one_over_their_overlap() -> None:
    left = blend_ramp(40, 16, left=False, right=True)
    right = blend_ramp(40, 16, left=True, right=False)
    np.testing.assert_allclose(left[-16:] + right[:16], 1.0)
    assert (left[:24] == 1).all() and (right[16:] == 1).all()  # full weight away from a neighbour
    assert (left > 0).all() and (right > 0).all()
    np.testing.assert_array_equal(blend_ramp(40, 0, left=True, right=True), np.ones(40, np.float32))
    np.testing.assert_array_equal(blend_ramp(40, 16, left=False, right=False), np.ones(40, np.float32))


def pointwise(batch: np.ndarray) -> np.ndarray:
    """Two output heads that depend on each pixel alone: tiling cannot change them."""
    return np.concatenate([batch * 2.0, np.sqrt(batch + 1.0)], axis=1).astype(np.float32)


@pytest.mark.parametrize(("shape", "tile", "overlap", "batch"), [((50, 70), 32, 8, 1), ((97, 33), 16, 4, 3)])
def test_tiles_blend_back_into_the_whole_image(
    shape: tuple[int, int], tile: int, overlap: int, batch: int
) -> None:
    image = np.random.default_rng(0).random((1, *shape)).astype(np.float32)
    job = predict_tiled(image, pointwise, 2, tile, overlap, multiple=8, batch_size=batch, workers=1)
    records = []
    while True:
        try:
            records.append(next(job))
        except StopIteration as stop:
            out = stop.value
            break
    assert len(records) > 1 and records[-1].step == records[-1].total  # really tiled, progress to the end
    assert out.shape == (2, *shape)
    np.testing.assert_allclose(out, pointwise(image[None])[0], rtol=1e-6)


def test_tiles_on_threads_match_one_at_a_time_and_restore_torch_threads() -> None:
    image = np.random.default_rng(1).random((1, 120, 90)).astype(np.float32)

    def run(workers: int) -> np.ndarray:
        job = predict_tiled(image, pointwise, 2, 32, 8, multiple=4, batch_size=1, workers=workers)
        while True:
            try:
                next(job)
            except StopIteration as stop:
                return stop.value

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        np.testing.assert_array_equal(run(2), run(1))
        assert torch.get_num_threads() == 2
        stopped = predict_tiled(image, pointwise, 2, 32, 8, multiple=4, batch_size=1, workers=2)
        next(stopped), next(stopped)
        stopped.close()  # cancelled with tiles queued and running
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_a_thread_pool_shares_the_torch_threads_among_its_workers() -> None:
    threads = torch.get_num_threads()
    try:
        with thread_pool(2, 4) as pool:
            shares = set(pool.map(lambda _: torch.get_num_threads(), range(8)))
        assert shares == {2}
        with thread_pool(3, 2) as pool:
            assert set(pool.map(lambda _: torch.get_num_threads(), range(6))) == {1}
    finally:
        torch.set_num_threads(threads)
