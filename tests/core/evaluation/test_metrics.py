import numpy as np
import pytest

from napari_unet.core.evaluation.metrics import (
    AP_THRESHOLDS,
    adapted_rand_error,
    average_precision,
    foreground_iou,
    iou_matrix,
    overlap_matrix,
    summarise,
)


def squares(*boxes: tuple[int, int, int, int], shape: tuple[int, int] = (20, 20)) -> np.ndarray:
    labels = np.zeros(shape, np.int32)
    for i, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = i
    return labels


def test_iou_matrix_by_hand() -> None:
    true = squares((0, 4, 0, 4))  # 16 px
    pred = squares((0, 4, 2, 6))  # 16 px, overlap 8 -> IoU 8 / 24
    assert iou_matrix(true, pred) == pytest.approx(np.array([[8 / 24]]))


def test_perfect_prediction_scores_one_everywhere() -> None:
    true = squares((0, 5, 0, 5), (10, 15, 10, 15))
    ap = average_precision(true, true)
    assert ap.shape == (len(AP_THRESHOLDS),)
    assert np.all(ap == 1.0)
    assert foreground_iou(true, true) == 1.0
    assert adapted_rand_error(true, true) == pytest.approx(0.0)


def test_ap_counts_tp_fp_fn_at_threshold() -> None:
    true = squares((0, 4, 0, 4), (10, 14, 10, 14))
    # object 1 found with IoU 12/20 = 0.6, object 2 missed, one false positive
    pred = squares((0, 4, 1, 5), (16, 19, 0, 3))
    ap = average_precision(true, pred, thresholds=[0.5, 0.7])
    assert ap[0] == pytest.approx(1 / (1 + 1 + 1))  # TP 1, FP 1, FN 1
    assert ap[1] == pytest.approx(0 / (0 + 2 + 2))


def test_matching_is_one_to_one() -> None:
    true = squares((0, 10, 0, 10))
    pred = squares((0, 10, 0, 5), (0, 10, 5, 10))  # two halves, IoU 0.5 each
    ap = average_precision(true, pred, thresholds=[0.5])
    assert ap[0] == pytest.approx(1 / 2)  # TP 1, FP 1 (the other half), FN 0


def test_hungarian_maximises_matches() -> None:
    # greedy by IoU would pair t1-p2 (0.68) and leave t2 and p1 unmatched
    true = np.zeros((1, 30), np.int32)
    pred = np.zeros((1, 30), np.int32)
    true[0, 0:10], true[0, 10:20] = 1, 2
    pred[0, 0:7], pred[0, 7:20] = 1, 2
    iou = iou_matrix(true, pred)
    assert iou[0, 0] == pytest.approx(0.7) and iou[1, 1] == pytest.approx(10 / 13)
    assert average_precision(true, pred, thresholds=[0.5])[0] == 1.0


def test_pooling_counts_over_images() -> None:
    true_a, pred_a = squares((0, 4, 0, 4)), squares((0, 4, 0, 4))
    true_b, pred_b = squares((0, 4, 0, 4), (6, 10, 6, 10), (12, 16, 12, 16)), squares()
    pooled = average_precision([true_a, true_b], [pred_a, pred_b], thresholds=[0.5])[0]
    assert pooled == pytest.approx(1 / 4)  # TP 1, FN 3 pooled; a per-image mean would give 0.5


def test_empty_images() -> None:
    empty = np.zeros((8, 8), np.int32)
    assert average_precision(empty, empty)[0] == 1.0
    assert foreground_iou(empty, empty) == 1.0
    assert average_precision(squares((0, 4, 0, 4), shape=(8, 8)), empty)[0] == 0.0


def test_foreground_iou_and_rand_error_by_hand() -> None:
    true = squares((0, 4, 0, 4))
    pred = squares((0, 4, 0, 2))
    assert foreground_iou(true, pred) == pytest.approx(8 / 16)
    merged = squares((0, 10, 0, 20))
    split_true = squares((0, 10, 0, 10), (0, 10, 10, 20))
    assert adapted_rand_error(split_true, merged) > 0.3


def test_summarise_has_every_design_metric() -> None:
    true = [squares((0, 4, 0, 4))]
    metrics = summarise(true, true)
    assert set(metrics) >= {"ap50", "ap50_95", "foreground_iou", "adapted_rand_error"}
    assert metrics["ap50"] == 1.0 and metrics["ap50_95"] == 1.0


def test_overlap_matrix_rows_are_objects_in_id_order_after_the_background() -> None:
    true = np.array([[0, 5], [5, 7]])
    pred = np.array([[3, 3], [0, 0]])
    np.testing.assert_array_equal(overlap_matrix(true, pred), [[0, 1], [1, 1], [1, 0]])
    # no background in either image: row and column 0 are still the background, empty
    np.testing.assert_array_equal(overlap_matrix(np.ones((2, 2), int), np.full((2, 2), 2)), [[0, 0], [0, 4]])
