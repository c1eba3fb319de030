import numpy as np

from napari_unet.core.config import HEAD_NAMES, PostprocessConfig
from napari_unet.core.postprocess import (
    PlaneNumbering,
    labels_from_outputs,
    remove_small_objects,
    stitch_planes,
)
from napari_unet.core.targets import head_targets, median_diameter


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


def test_median_diameter() -> None:
    labels = np.zeros((50, 50), np.int32)
    labels[0:10, 0:10] = 1
    labels[20:30, 20:30] = 2
    assert median_diameter(labels) == np.sqrt(4 * 100 / np.pi)
    assert median_diameter(np.zeros((5, 5), np.int32)) is None


def test_plane_numbering_joins_only_consecutive_planes_of_one_stack() -> None:
    square = np.zeros((10, 10), np.int32)
    square[2:8, 2:8] = 1
    joined = PlaneNumbering(stitch=True)
    ids = [int(joined.add(index, square).max()) for index in [(0, 0), (0, 1), (1, 0), (1, 2)]]
    assert ids[0] == ids[1]  # z 0 -> 1 in t 0: the same object
    assert len({ids[1], ids[2], ids[3]}) == 3  # a new time point, then a gap: new objects
    apart = PlaneNumbering(stitch=False)
    assert [int(apart.add(index, square).max()) for index in [(0,), (1,)]] == [1, 2]
