"""``scripts/outline_errors.py``: where a prediction's misplaced pixels lie, and the shift that undoes an offset."""

from __future__ import annotations

import numpy as np

from tests.helpers import load_script


def two_squares() -> np.ndarray:
    labels = np.zeros((40, 40), np.int32)
    labels[5:15, 5:15] = 3  # ids need not be consecutive
    labels[5:15, 15:25] = 7
    return labels


def test_misplaced_pixels_are_told_apart_by_what_lies_under_them() -> None:
    outline_errors = load_script("outline_errors")
    truth = two_squares()
    pred = np.zeros_like(truth)
    pred[5:15, 5:17] = 1  # object 3 plus two columns of object 7
    pred[5:15, 17:26] = 2  # object 7 less those columns, plus one column of background
    ious, where = outline_errors.misplaced_pixels(truth, pred)
    assert sorted(ious) == [80 / 110, 100 / 120]
    assert where == {
        "extra over background": 10,
        "extra over another object": 20,
        "missed to background": 0,
        "missed to another object": 20,
    }


def test_the_best_shift_undoes_an_offset_and_per_object_changes_keep_the_ids() -> None:
    outline_errors = load_script("outline_errors")
    truth = two_squares()
    shifted = np.roll(truth, (2, -1), (0, 1))
    assert outline_errors.best_shift([truth], [shifted]) == (-2, 1)
    grown = outline_errors.per_object(truth, lambda mask: mask | np.roll(mask, 1, 0))
    assert set(np.unique(grown)) == {0, 3, 7} and (grown == 3).sum() == 110
