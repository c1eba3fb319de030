import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from napari_unet.core.config import HEAD_NAMES, PostprocessConfig
from napari_unet.core.segmentation.postprocess import (
    PlaneNumbering,
    PlaneOutputs,
    flood_regions,
    join_over_saddles,
    labels_from_outputs,
    plane_labels,
    relabel,
    remove_small_objects,
    stitch_planes,
    without_doubtful_objects,
)
from napari_unet.core.training.targets import head_targets


def touching_discs() -> np.ndarray:
    yy, xx = np.mgrid[:40, :60]
    labels = np.zeros((40, 60), np.int32)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 < 12**2] = 1
    labels[(yy - 20) ** 2 + (xx - 40) ** 2 < 12**2] = 2  # overlaps disc 1: they touch
    return labels


def test_perfect_outputs_separate_touching_objects() -> None:
    truth = touching_discs()
    labels = labels_from_outputs(head_targets(truth), HEAD_NAMES, PostprocessConfig())
    assert labels.max() == 2
    for value in (1, 2):
        overlap = np.bincount(labels[truth == value], minlength=3)
        assert overlap.max() / overlap.sum() > 0.95


def test_min_size_removes_specks_and_renumbers() -> None:
    labels = np.zeros((10, 10), np.int32)
    labels[0:5, 0:5] = 3
    labels[8, 8] = 7
    cleaned = remove_small_objects(labels, 4)
    assert set(np.unique(cleaned)) == {0, 1}
    assert (cleaned == 1).sum() == 25


def test_empty_foreground_gives_no_objects() -> None:
    outputs = np.zeros((3, 16, 16), np.float32)
    assert not labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig()).any()


def test_foreground_without_seed_still_becomes_an_object() -> None:
    outputs = np.zeros((3, 16, 16), np.float32)
    outputs[0, 4:12, 4:12] = 0.9  # foreground but no confident centre
    labels = labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig(min_size=1))
    assert labels.max() == 1 and (labels == 1).sum() == 64


def test_fill_background_covers_the_image() -> None:
    truth = touching_discs()
    labels = labels_from_outputs(head_targets(truth), HEAD_NAMES, PostprocessConfig(fill_background=True))
    assert labels.min() > 0 and labels.max() == 2


def test_stitching_follows_objects_across_planes() -> None:
    previous = np.zeros((10, 10), np.int64)
    previous[0:5, 0:5] = 7
    current = np.zeros((10, 10), np.int32)
    current[1:5, 0:5] = 1  # same object, shrinking
    current[7:9, 7:9] = 2  # new object
    stitched, next_id = stitch_planes(previous, current, next_id=8)
    assert stitched[2, 2] == 7
    assert stitched[8, 8] == 8 and next_id == 9


def test_plane_numbering_joins_only_consecutive_planes_of_one_stack() -> None:
    square = np.zeros((10, 10), np.int32)
    square[2:8, 2:8] = 1
    joined = PlaneNumbering(stitch=True)
    ids = [int(joined.add(index, square).max()) for index in [(0, 0), (0, 1), (1, 0), (1, 2)]]
    assert ids[0] == ids[1]  # z 0 -> 1 in t 0: the same object
    assert len({ids[1], ids[2], ids[3]}) == 3  # a new time point, then a gap: new objects
    apart = PlaneNumbering(stitch=False)
    assert [int(apart.add(index, square).max()) for index in [(0,), (1,)]] == [1, 2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flooding_region_by_region_equals_one_whole_image_watershed(seed: int) -> None:
    """Blobby foreground, several seeds per blob, some blobs without seeds; no ties in elevation."""
    rng = np.random.default_rng(seed)
    field = ndi.gaussian_filter(rng.random((160, 200)), 6)
    mask = field > np.quantile(field, 0.45)
    elevation = -ndi.gaussian_filter(rng.random((160, 200)), 3) + rng.random((160, 200)) * 1e-9
    seeds = mask & (elevation < np.quantile(elevation, 0.03))
    markers, _ = ndi.label(seeds, structure=ndi.generate_binary_structure(2, 1))
    four = ndi.generate_binary_structure(2, 1)
    expected = watershed(elevation, markers, mask=mask)
    unseeded, count = ndi.label(mask & (expected == 0), structure=four)
    expected[unseeded > 0] = unseeded[unseeded > 0] + markers.max()
    per_region = np.bincount(ndi.label(mask, structure=four)[0][markers > 0])
    assert count > 0 and (per_region[1:] > 1).any()  # both shortcuts and real watersheds ran
    np.testing.assert_array_equal(flood_regions(elevation, markers, mask), expected)


def test_removing_small_objects_keeps_the_order_of_ids() -> None:
    labels = np.array([[5, 5, 0, 2], [9, 9, 9, 0]], np.int32)
    np.testing.assert_array_equal(remove_small_objects(labels, 2), [[1, 1, 0, 0], [2, 2, 2, 0]])
    np.testing.assert_array_equal(remove_small_objects(labels, 0), [[2, 2, 0, 1], [3, 3, 3, 0]])
    assert not remove_small_objects(np.zeros((3, 3), np.int32), 5).any()


def test_a_fragment_joins_the_object_it_touches_and_a_lone_speck_goes() -> None:
    outputs = np.zeros((3, 30, 40), np.float32)
    outputs[0, 5:25, 5:25] = 0.9  # one foreground region ...
    outputs[2, 8:22, 8:18] = 0.9  # ... with a big confident centre
    outputs[2, 20:23, 21:24] = 0.9  # and a small one at its edge: a fragment once flooded
    outputs[0, 2:4, 33:35] = 0.9  # a lone speck elsewhere
    outputs[2, 2:4, 33:35] = 0.9
    config = PostprocessConfig(min_size=60)
    labels = labels_from_outputs(outputs, HEAD_NAMES, config)
    assert labels.max() == 1
    assert (labels == 1).sum() == 400  # the whole region, fragment included
    assert not labels[2:4, 33:35].any()
    # without merging the fragment, its pixels would have been lost
    fragment_seeds = ndi.label(outputs[2] > 0.5)[0]
    flooded = flood_regions(-outputs[2], fragment_seeds, outputs[0] > 0.5)
    assert (remove_small_objects(flooded, 60) == 1).sum() < 400


def test_merging_fragments_also_fills_the_background_for_membranes() -> None:
    truth = touching_discs()
    outputs = head_targets(truth)
    outputs[2, 1:3, 1:3] = 1.0  # a stray seed in the corner floods a fragment
    labels = labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig(fill_background=True, min_size=30))
    assert labels.min() > 0 and labels.max() == 2


def test_an_object_cut_through_its_middle_is_joined_and_touching_objects_are_not() -> None:
    truth = touching_discs()
    distance = head_targets(truth)[2]
    cut = truth.copy()
    cut[(truth == 1) & (np.arange(60)[None, :] >= 20)] = 3  # disc 1 cut in two through its centre
    joined = join_over_saddles(cut, distance, 0.7)
    assert joined.max() == 2
    np.testing.assert_array_equal(joined, truth)  # renumbered in order of the lowest old id
    # the border of the two real discs runs along the distance map's valley
    np.testing.assert_array_equal(join_over_saddles(truth, distance, 0.7), truth)
    # threshold 1 joins nothing
    np.testing.assert_array_equal(join_over_saddles(cut, distance, 1.0), cut)


def test_join_threshold_in_postprocessing_mends_a_nucleus_with_two_seeds() -> None:
    truth = touching_discs()
    outputs = head_targets(truth)
    outputs[2][truth == 1] = np.where(  # disc 1's distance output has two peaks with a shallow dip between
        np.abs(np.arange(60)[None, :] - 20) < 2, 0.45, outputs[2]
    )[truth == 1]
    split = labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig())
    assert split.max() == 3
    mended = labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig(join_threshold=0.4))
    assert mended.max() == 2
    for value in (1, 2):
        overlap = np.bincount(mended[truth == value], minlength=3)
        assert overlap.max() / overlap.sum() > 0.95


def test_join_threshold_is_checked() -> None:
    with pytest.raises(ValueError, match="join_threshold"):
        PostprocessConfig(join_threshold=0.0)
    with pytest.raises(ValueError, match="join_threshold"):
        PostprocessConfig(join_threshold=1.5)


def test_objects_the_network_doubts_are_dropped() -> None:
    truth = touching_discs()
    outputs = head_targets(truth)
    outputs[0][truth == 2] = 0.6  # the second disc is only just foreground
    assert labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig()).max() == 2
    labels = labels_from_outputs(outputs, HEAD_NAMES, PostprocessConfig(object_probability=0.8))
    assert labels.max() == 1
    assert (labels[truth == 1] == 1).mean() > 0.95 and not labels[truth == 2].any()
    # the mean decides, not single pixels: a confident object with one doubtful pixel stays
    foreground = np.where(truth > 0, 0.9, 0.0)
    foreground[20, 20] = 0.1
    np.testing.assert_array_equal(without_doubtful_objects(truth, foreground, 0.8), truth)
    with pytest.raises(ValueError, match="object_probability"):
        PostprocessConfig(object_probability=1.0)


def squares(*boxes: tuple[int, int, int]) -> np.ndarray:
    """Labels 1..N of squares (top, left, edge) on a 64 x 64 plane."""
    labels = np.zeros((64, 64), np.int32)
    for number, (top, left, edge) in enumerate(boxes, start=1):
        labels[top : top + edge, left : left + edge] = number
    return labels


def test_relabel_numbers_cached_planes_in_stack_order_apart_or_stitched() -> None:
    first, second = squares((5, 5, 20), (40, 40, 16)), squares((6, 6, 20))
    outputs = {(1,): PlaneOutputs(head_targets(second), 1.0), (0,): PlaneOutputs(head_targets(first), 1.0)}
    apart = relabel(outputs, HEAD_NAMES, stitch=False, config=PostprocessConfig())
    assert list(apart) == [(0,), (1,)]
    assert apart[(0,)].dtype == np.int32
    assert set(np.unique(apart[(0,)])) == {0, 1, 2} and set(np.unique(apart[(1,)])) == {0, 3}
    joined = relabel(outputs, HEAD_NAMES, stitch=True, config=PostprocessConfig())
    assert joined[(1,)][15, 15] == joined[(0,)][15, 15] == 1  # the same square, one object
    numbering = PlaneNumbering(stitch=True)
    for plane in ((0,), (1,)):  # as a segmentation numbers its planes
        expected = numbering.add(plane, plane_labels(outputs[plane], HEAD_NAMES, PostprocessConfig()))
        np.testing.assert_array_equal(joined[plane], expected)


def test_relabel_applies_new_settings_with_the_minimum_size_at_the_models_scale() -> None:
    labels = squares((5, 5, 20), (40, 40, 10))  # 400 and 100 pixels
    outputs = {(): PlaneOutputs(head_targets(labels), 1.0)}
    assert relabel(outputs, HEAD_NAMES, False, PostprocessConfig(min_size=50))[()].max() == 2
    assert relabel(outputs, HEAD_NAMES, False, PostprocessConfig(min_size=200))[()].max() == 1
    # a plane enlarged 2x for the network: 200 px at the model's scale are 50 px here
    enlarged = {(): PlaneOutputs(head_targets(labels), 2.0)}
    assert relabel(enlarged, HEAD_NAMES, False, PostprocessConfig(min_size=200))[()].max() == 2
