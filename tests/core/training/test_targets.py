import numpy as np
import pytest
from skimage.segmentation import find_boundaries

from napari_unet.core.config import HEAD_NAMES
from napari_unet.core.training.targets import head_targets, normalised_distance


def two_touching_squares() -> np.ndarray:
    labels = np.zeros((30, 40), np.int32)
    labels[5:25, 5:20] = 1
    labels[5:25, 20:35] = 2  # shares a border with object 1
    return labels


def test_targets_follow_the_heads_in_the_models_order() -> None:
    labels = two_touching_squares()
    targets = head_targets(labels, ("distance", "foreground"))
    assert targets.shape == (2, 30, 40) and targets.dtype == np.float32
    np.testing.assert_array_equal(targets[1], labels > 0)
    np.testing.assert_array_equal(targets[0], normalised_distance(labels))
    assert head_targets(labels).shape == (len(HEAD_NAMES), 30, 40)


def test_the_boundary_head_separates_touching_objects() -> None:
    labels = two_touching_squares()
    boundary = head_targets(labels, ("foreground", "boundary"))[1]
    np.testing.assert_array_equal(boundary, find_boundaries(labels, mode="inner"))
    assert boundary[15, 19] == 1 and boundary[15, 20] == 1  # both sides of the shared border
    assert boundary[15, 12] == 0 and boundary[0, 0] == 0


def test_distance_is_one_at_each_objects_centre_and_zero_at_its_outline() -> None:
    labels = two_touching_squares()
    labels[26:29, 36:39] = 3  # a small object reaches 1 as well: each is divided by its own peak
    distance = normalised_distance(labels)
    assert distance.min() == 0.0 and distance.max() == 1.0
    for label in (1, 2, 3):
        assert distance[labels == label].max() == pytest.approx(1.0)
    assert (distance[find_boundaries(labels, mode="inner")] == 0).all()
    assert (distance[labels == 0] == 0).all()


def test_no_objects_give_empty_targets_and_an_unknown_head_is_refused() -> None:
    targets = head_targets(np.zeros((8, 8), np.int32))
    assert not targets.any()
    with pytest.raises(ValueError, match="unknown head 'colour'"):
        head_targets(np.zeros((8, 8), np.int32), ("foreground", "colour"))
