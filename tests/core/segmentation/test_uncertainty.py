"""Per-object uncertainty: ambiguous objects rank above clean ones, flips count, sorting, edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.progress import run
from napari_unet.core.segmentation.postprocess import PlaneOutputs, plane_labels
from napari_unet.core.segmentation.segmenter import FLIPS, Segmenter
from napari_unet.core.segmentation.uncertainty import (
    TERMS,
    flip_labels,
    rank_plane,
    uncertain_objects,
    uncertainty_terms,
)
from tests.helpers import tiny_bundle

HEADS = ("foreground", "boundary", "distance")


def two_squares() -> tuple[np.ndarray, np.ndarray]:
    """Labels with a clean object (id 7) and an ambiguous one (id 3), and outputs to match.

    Object 7: foreground 0.98, boundary 0.9 along its outline, a distance peak of 1.
    Object 3: foreground 0.55, boundary 0.1 along its outline, a distance peak of 0.3.
    """
    labels = np.zeros((40, 60), np.int32)
    labels[5:15, 5:15] = 7
    labels[20:34, 30:50] = 3
    fg = np.full(labels.shape, 0.02, np.float32)
    boundary = np.zeros(labels.shape, np.float32)
    distance = np.zeros(labels.shape, np.float32)
    fg[labels == 7], fg[labels == 3] = 0.98, 0.55
    boundary[5:15, 5:15] = 0.9
    boundary[6:14, 6:14] = 0.0  # 0.9 on the outline only
    boundary[20:34, 30:50] = 0.1
    distance[labels == 7] = 0.5
    distance[10, 10] = 1.0
    distance[labels == 3] = 0.3
    return labels, np.stack([fg, boundary, distance])


def test_an_ambiguous_object_ranks_above_a_clean_one_and_each_term_says_why() -> None:
    labels, probabilities = two_squares()
    ranked = uncertain_objects(labels, probabilities, HEADS)
    assert [o.label for o in ranked] == [3, 7]
    ambiguous, clean = ranked
    assert set(ambiguous.terms) == {"centre", "outline", "foreground"}  # no flips given
    assert ambiguous.terms["centre"] == pytest.approx(0.7)
    assert clean.terms["centre"] == pytest.approx(0.0)
    assert ambiguous.terms["outline"] == pytest.approx(0.9)
    assert clean.terms["outline"] == pytest.approx(0.1)
    assert ambiguous.terms["foreground"] == pytest.approx(0.9)
    assert clean.terms["foreground"] == pytest.approx(0.04, abs=1e-6)
    for item in ranked:
        assert item.score == pytest.approx(np.mean(list(item.terms.values())))
        assert 0.0 <= item.score <= 1.0
    # centroids in (y, x) pixel coordinates of the plane
    assert ambiguous.centroid == pytest.approx((26.5, 39.5))
    assert clean.centroid == pytest.approx((9.5, 9.5))


def test_the_image_edge_is_not_an_outline() -> None:
    """An object cut by the image edge is judged by the outline the network could see."""
    labels = np.zeros((20, 20), np.int32)
    labels[:8, :8] = 1
    probabilities = np.zeros((3, 20, 20), np.float32)
    probabilities[0][labels == 1] = 1.0
    probabilities[1][7, :8] = probabilities[1][:8, 7] = 1.0  # a sure edge where it meets the background
    _, terms = uncertainty_terms(labels, probabilities, HEADS)
    assert terms["outline"][0] == pytest.approx(0.0)


def test_objects_the_flipped_images_draw_differently_rank_first() -> None:
    """Equal outputs; the object the flips split in two is the uncertain one."""
    labels = np.zeros((30, 60), np.int32)
    labels[5:25, 5:25] = 1
    labels[5:25, 35:55] = 2
    probabilities = np.zeros((1, 30, 60), np.float32)
    probabilities[0][labels > 0] = 0.9
    split = labels.copy()
    split[5:25, 5:15] = 5  # object 1 halved: best IoU 0.5
    ranked = uncertain_objects(labels, probabilities, ("foreground",), flipped=[labels, split, split, labels])
    assert [o.label for o in ranked] == [1, 2]
    assert ranked[0].terms["flips"] == pytest.approx(0.25)  # 1 - mean(1, .5, .5, 1)
    assert ranked[1].terms["flips"] == pytest.approx(0.0)
    assert set(ranked[0].terms) == {"flips", "foreground"}
    # an object missing from a flip counts as IoU 0 there
    ranked = uncertain_objects(labels, probabilities, ("foreground",), flipped=[np.where(labels == 2, 2, 0)])
    assert ranked[0].label == 1 and ranked[0].terms["flips"] == pytest.approx(1.0)


def test_sorted_by_score_ties_by_id_and_skipped_objects_left_out() -> None:
    labels = np.zeros((50, 50), np.int32)
    probabilities = np.zeros((1, 50, 50), np.float32)
    for index, (label, p) in enumerate([(4, 0.9), (2, 0.6), (9, 0.6), (1, 0.99), (6, 0.75)]):
        labels[index * 10 : index * 10 + 6, 2:8] = label
        probabilities[0][labels == label] = p
    ranked = uncertain_objects(labels, probabilities, ("foreground",))
    assert [o.label for o in ranked] == [2, 9, 6, 4, 1]
    assert [o.score for o in ranked] == sorted((o.score for o in ranked), reverse=True)
    skip = np.zeros(labels.shape, bool)
    skip[12, 4] = True  # one pixel of object 2: the person corrected it
    assert [o.label for o in uncertain_objects(labels, probabilities, ("foreground",), skip=skip)] == [
        9,
        6,
        4,
        1,
    ]


def test_no_objects_no_ranking() -> None:
    probabilities = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    assert uncertain_objects(np.zeros((16, 16), np.uint16), probabilities, HEADS) == []
    ids, terms = uncertainty_terms(np.zeros((16, 16), np.int32), probabilities, HEADS, [np.ones((16, 16))])
    assert ids.size == 0 and terms == {}
    with pytest.raises(ValueError, match="labels shape"):
        uncertainty_terms(np.zeros((8, 8), np.int32), probabilities, HEADS)


def blobs_image() -> np.ndarray:
    image = np.zeros((64, 96), np.float32)
    yy, xx = np.mgrid[:64, :96]
    for y, x, r in ((16, 20, 7), (40, 60, 9), (20, 75, 6), (48, 22, 8)):
        image[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 1.0
    return image + 0.05 * np.random.default_rng(1).random(image.shape).astype(np.float32)


def test_each_flips_outputs_average_to_the_augmented_ones() -> None:
    bundle = tiny_bundle()
    image = blobs_image()
    options = {"device": "cpu", "amp": False, "tile_size": 64, "tile_overlap": 16}
    plain = Segmenter(bundle, InferenceConfig(**options))
    augmented = Segmenter(bundle, InferenceConfig(**options, augment=True))
    outputs = run(plain.predict_plane(image, 1.0, flips=True))
    assert outputs.flips is not None and outputs.flips.shape == (len(FLIPS), len(plain.heads), 64, 96)
    np.testing.assert_allclose(
        outputs.flips[0], run(plain.predict_plane(image, 1.0)).probabilities, atol=1e-6
    )
    np.testing.assert_allclose(
        outputs.probabilities, run(augmented.predict_plane(image, 1.0)).probabilities, atol=1e-6
    )
    assert not np.allclose(outputs.flips[1], outputs.flips[0], atol=1e-3)  # the flips differ
    # resized back to the plane at another working scale, each flip too
    halved = run(plain.predict_plane(image, 0.5, flips=True))
    assert halved.flips is not None and halved.flips.shape[-2:] == (64, 96)
    np.testing.assert_allclose(halved.flips.mean(axis=0), halved.probabilities, atol=1e-6)


def test_rank_plane_judges_the_labels_given_against_the_flips() -> None:
    bundle = tiny_bundle(postprocess=PostprocessConfig(min_size=0))
    segmenter = Segmenter(bundle, InferenceConfig(device="cpu", amp=False))
    image = blobs_image()
    outputs = run(segmenter.predict_plane(image, 1.0, flips=True))
    flipped = flip_labels(outputs, segmenter.heads, segmenter.postprocess)
    assert len(flipped) == len(FLIPS)
    assert flip_labels(PlaneOutputs(outputs.probabilities, 1.0), segmenter.heads, segmenter.postprocess) == []
    labels = plane_labels(outputs, segmenter.heads, segmenter.postprocess)
    ranked = run(rank_plane(segmenter, image, labels, 1.0))
    assert sorted(o.label for o in ranked) == sorted(set(np.unique(labels)) - {0})
    expected = uncertain_objects(labels, outputs.probabilities, segmenter.heads, flipped)
    assert [(o.label, o.score) for o in ranked] == [(o.label, pytest.approx(o.score)) for o in expected]
    assert all(set(o.terms) == set(TERMS) for o in ranked)
    # a drawn object the network never saw: no flip reproduces it, no centre, no edge
    drawn = labels.copy()
    drawn[2:10, 2:10] = drawn.max() + 1
    first = run(rank_plane(segmenter, image, drawn, 1.0))[0]
    assert first.label == drawn.max() and first.terms["flips"] == pytest.approx(1.0)
