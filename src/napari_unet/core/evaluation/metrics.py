"""Segmentation metrics, defined once for every score napari-unet reports.

- AP@tau = TP / (TP + FP + FN); predicted and true objects are matched
  one-to-one (Hungarian matching, as many matches as possible, then maximum
  total IoU) among pairs with IoU >= tau; counts are pooled over all images.
- Foreground IoU of ``labels > 0``, averaged over images.
- Adapted Rand error (``skimage.metrics.adapted_rand_error``), averaged over images.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment
from skimage.metrics import adapted_rand_error as _adapted_rand_error

AP_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2).tolist())


def overlap_matrix(true: NDArray[np.integer], pred: NDArray[np.integer]) -> NDArray[np.int64]:
    """Pixels shared by every true object and every predicted object, background included.

    Parameters
    ----------
    true, pred : ndarray of int, same shape
        Instance labels, 0 = background.

    Returns
    -------
    ndarray of int64, shape (n_true + 1, n_pred + 1)
        Row 0 and column 0 are the background; row ``i`` is the true object with the
        ``i``-th smallest id, column ``j`` likewise for predictions.

    """
    if true.shape != pred.shape:
        raise ValueError(f"label shapes differ: {true.shape} vs {pred.shape}")
    true_ids, true_inv = np.unique(true.ravel(), return_inverse=True)
    pred_ids, pred_inv = np.unique(pred.ravel(), return_inverse=True)
    counts = np.bincount(
        true_inv * len(pred_ids) + pred_inv, minlength=len(true_ids) * len(pred_ids)
    ).reshape(len(true_ids), len(pred_ids))
    # row and column 0 are the background even where there is none
    if true_ids[0] != 0:
        counts = np.vstack([np.zeros((1, counts.shape[1]), counts.dtype), counts])
    if pred_ids[0] != 0:
        counts = np.hstack([np.zeros((counts.shape[0], 1), counts.dtype), counts])
    return counts


def iou_matrix(true: NDArray[np.integer], pred: NDArray[np.integer]) -> NDArray[np.float64]:
    """IoU between every true object and every predicted object.

    Parameters
    ----------
    true, pred : ndarray of int, same shape
        Instance labels, 0 = background.

    Returns
    -------
    ndarray of float64, shape (n_true, n_pred)
        Row ``i`` is the true object with the ``i``-th smallest id, column ``j``
        likewise for predictions.

    """
    counts = overlap_matrix(true, pred)
    area_true = counts.sum(axis=1, keepdims=True)
    area_pred = counts.sum(axis=0, keepdims=True)
    union = area_true + area_pred - counts
    return (counts / np.maximum(union, 1))[1:, 1:]


def matched_count(iou: NDArray[np.float64], threshold: float) -> int:
    """Number of one-to-one matches with IoU >= ``threshold`` (Hungarian)."""
    if iou.size == 0:
        return 0
    eligible = iou >= threshold
    if not eligible.any():
        return 0
    # prefer more matches first, then higher IoU among equally many
    cost = -eligible.astype(np.float64) - iou / (2.0 * max(iou.shape))
    rows, cols = linear_sum_assignment(cost)
    return int(eligible[rows, cols].sum())


@dataclass
class MatchCounts:
    """Pooled true positives, false positives and false negatives per threshold."""

    thresholds: tuple[float, ...] = AP_THRESHOLDS
    tp: NDArray[np.int64] = field(init=False)
    fp: NDArray[np.int64] = field(init=False)
    fn: NDArray[np.int64] = field(init=False)

    def __post_init__(self) -> None:
        self.tp, self.fp, self.fn = (np.zeros(len(self.thresholds), np.int64) for _ in range(3))

    def add(self, true: NDArray[np.integer], pred: NDArray[np.integer]) -> None:
        """Add one image's matches."""
        iou = iou_matrix(true, pred)
        n_true, n_pred = iou.shape
        for i, threshold in enumerate(self.thresholds):
            tp = matched_count(iou, threshold)
            self.tp[i] += tp
            self.fp[i] += n_pred - tp
            self.fn[i] += n_true - tp

    def average_precision(self) -> NDArray[np.float64]:
        """AP per threshold (1.0 where there was nothing to find and nothing found)."""
        denominator = self.tp + self.fp + self.fn
        return np.where(denominator > 0, self.tp / np.maximum(denominator, 1), 1.0)


def average_precision(
    true: Sequence[NDArray[np.integer]] | NDArray[np.integer],
    pred: Sequence[NDArray[np.integer]] | NDArray[np.integer],
    thresholds: Iterable[float] = AP_THRESHOLDS,
) -> NDArray[np.float64]:
    """Pooled AP over images at each threshold.

    Parameters
    ----------
    true, pred : ndarray or sequence of ndarray
        One label image, or matching lists of them.
    thresholds : iterable of float
        IoU thresholds.

    Returns
    -------
    ndarray of float64, shape (n_thresholds,)

    """
    if isinstance(true, np.ndarray):
        true, pred = [true], [pred]  # type: ignore[list-item]
    counts = MatchCounts(tuple(thresholds))
    for t, p in zip(true, pred, strict=True):
        counts.add(np.asarray(t), np.asarray(p))
    return counts.average_precision()


def foreground_iou(true: NDArray[np.integer], pred: NDArray[np.integer]) -> float:
    """IoU of ``true > 0`` and ``pred > 0`` (1.0 when both are empty)."""
    t, p = true > 0, pred > 0
    union = np.logical_or(t, p).sum()
    return float(np.logical_and(t, p).sum() / union) if union else 1.0


def adapted_rand_error(true: NDArray[np.integer], pred: NDArray[np.integer]) -> float:
    """``skimage.metrics.adapted_rand_error`` (true background ignored), error only."""
    error, _, _ = _adapted_rand_error(
        np.asarray(true).astype(np.int64, copy=False), np.asarray(pred).astype(np.int64, copy=False)
    )
    return float(error)


def summarise(true: Sequence[NDArray[np.integer]], pred: Sequence[NDArray[np.integer]]) -> dict[str, float]:
    """All the metrics (see the module docstring) over a set of images.

    Returns
    -------
    dict
        ``ap50`` (AP@0.5), ``ap50_95`` (mean AP over 0.5:0.95), ``ap75``,
        ``foreground_iou`` and ``adapted_rand_error`` (means over images), ``images``.

    """
    ap = average_precision(true, pred)
    return {
        "ap50": float(ap[0]),
        "ap75": float(ap[AP_THRESHOLDS.index(0.75)]),
        "ap50_95": float(ap.mean()),
        "foreground_iou": float(np.mean([foreground_iou(t, p) for t, p in zip(true, pred, strict=True)])),
        "adapted_rand_error": float(
            np.mean([adapted_rand_error(t, p) for t, p in zip(true, pred, strict=True)])
        ),
        "images": float(len(true)),
    }
