"""Where to correct next: a per-object uncertainty, highest for the objects most likely wrong.

An object's uncertainty is the mean of these terms, each from 0 (the network
is sure) to 1, over those the model's outputs allow:

``flips``
    1 - the object's best IoU with an object of each flipped image's labels,
    averaged over the image and its three mirror images
    (:data:`~napari_unet.core.segmentation.segmenter.FLIPS`: the network run
    on the mirrored image, its outputs mirrored back and post-processed with
    the same settings).  An object that comes out differently when the image
    is mirrored (split, merged, shifted, missing) is a guess.  Needs the
    per-flip outputs (:meth:`Segmenter.predict_plane` with ``flips``).
``centre``
    1 - the highest distance-head value inside the object: the network sees
    no clear object centre (a fragment, or two objects drawn as one).
``outline``
    1 - the mean boundary probability along the object's outline (its pixels
    next to the background or another object; the image edge is not an
    outline): the network sees no edge where the object ends.
``foreground``
    The mean of ``1 - |2p - 1|`` over the object's pixels, ``p`` the
    foreground probability: 0 where every pixel is surely inside, 1 where
    each is a coin toss.

All terms count equally: each is cheap, needs no threshold and reads as a
probability, and together they find wrong objects (no true object at IoU >=
0.5) better than any one alone.  Area under the ROC curve for wrong objects,
from ``python benchmarks/uncertainty_guided.py --rank-only`` (``phase-cells`` on
``cells-usiigaci/val``; add ``--model nuclei --images … --labels …`` for
``nuclei`` on ``nuclei-dsb2018/val``):

=============  ===========  ======
score          phase-cells  nuclei
=============  ===========  ======
uncertainty    0.771        0.818
flips alone    0.728        0.792
centre alone   0.694        0.763
outline alone  0.709        0.757
foreground     0.648        0.703
=============  ===========  ======

Among each image's 5 most uncertain objects 44 % were wrong (phase-cells;
10 % of all its objects) and 19 % (nuclei; 6 % of all).  Whether correcting
them pays off in fine-tuning is the rest of that benchmark.

Computing the flips costs four network passes over the plane (what test-time
augmentation costs); the other terms read the outputs a segmentation has
already made.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from napari_unet.core.config import PostprocessConfig
from napari_unet.core.progress import Progress
from napari_unet.core.segmentation.postprocess import PlaneOutputs, plane_labels

if TYPE_CHECKING:
    from napari_unet.core.segmentation.segmenter import Segmenter

TERMS: tuple[str, ...] = ("flips", "centre", "outline", "foreground")
"""The terms an object's uncertainty averages, in the order they are listed above."""


@dataclass(frozen=True)
class UncertainObject:
    """One object of a labelled plane and how uncertain the network is about it.

    Attributes
    ----------
    label : int
        The object's id in the labels.
    score : float
        Its uncertainty, 0 (sure) to 1: the mean of ``terms``.
    centroid : tuple of float
        ``(y, x)`` centre of mass of its pixels, in the plane's pixel coordinates.
    terms : dict
        Term name (see :data:`TERMS`) -> value, for the terms the outputs allow.

    """

    label: int
    score: float
    centroid: tuple[float, float]
    terms: dict[str, float]


def flip_labels(
    outputs: PlaneOutputs, heads: tuple[str, ...], config: PostprocessConfig
) -> list[NDArray[np.int32]]:
    """The labels of each flip's outputs, post-processed as the plane's own labels are.

    Parameters
    ----------
    outputs : PlaneOutputs
        With ``flips`` (see :meth:`Segmenter.predict_plane`).
    heads : tuple of str
        The model's output heads, in the outputs' channel order.
    config : PostprocessConfig
        The settings the plane's labels were made with.

    Returns
    -------
    list of ndarray of int32, shape (Y, X)
        One per flip; empty when ``outputs`` has no per-flip outputs.

    """
    if outputs.flips is None:
        return []
    return [
        plane_labels(PlaneOutputs(np.ascontiguousarray(flip), outputs.scale, outputs.blank), heads, config)
        for flip in outputs.flips
    ]


def _compact(labels: NDArray[np.integer[Any]]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The object ids in ``labels`` and the labels renumbered 1..N in their order (0 stays 0)."""
    ids = np.unique(labels)
    ids = ids[ids != 0].astype(np.int64)
    compact = np.where(labels != 0, np.searchsorted(ids, labels) + 1, 0)
    return ids, compact


def _best_iou(
    compact: NDArray[np.int64], area: NDArray[np.int64], other: NDArray[np.integer[Any]]
) -> NDArray[np.float64]:
    """Each object's (1..N) best IoU with an object of ``other``."""
    count = area.size - 1
    _, other_compact = _compact(other)
    other_area = np.bincount(other_compact.ravel())
    both = (compact > 0) & (other_compact > 0)
    stride = other_area.size
    pairs, overlap = np.unique(compact[both] * stride + other_compact[both], return_counts=True)
    mine, theirs = pairs // stride, pairs % stride
    iou = overlap / (area[mine] + other_area[theirs] - overlap)
    best = np.zeros(count + 1, np.float64)
    np.maximum.at(best, mine, iou)
    return best[1:]


def _outline(compact: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Object pixels with a 4-neighbour (inside the image) of another label or the background."""
    outline = np.zeros(compact.shape, bool)
    for axis in (0, 1):
        first = [slice(None)] * 2
        second = [slice(None)] * 2
        first[axis], second[axis] = slice(None, -1), slice(1, None)
        changes = compact[tuple(first)] != compact[tuple(second)]
        outline[tuple(first)] |= changes
        outline[tuple(second)] |= changes
    return outline & (compact > 0)


def uncertainty_terms(
    labels: NDArray[np.integer[Any]],
    probabilities: NDArray[np.floating[Any]],
    heads: tuple[str, ...],
    flipped: Sequence[NDArray[np.integer[Any]]] = (),
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.float64]]]:
    """Each object's uncertainty terms (see the module's description).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        The objects to judge (any ids; 0 = background).
    probabilities : ndarray of float, shape (H, Y, X)
        The network's outputs for the plane, one channel per head.
    heads : tuple of str
        Must include ``"foreground"``; ``"distance"`` and ``"boundary"`` add
        the ``centre`` and ``outline`` terms.
    flipped : sequence of ndarray of int, shape (Y, X)
        The labels of each flip (:func:`flip_labels`); none leaves out the
        ``flips`` term.

    Returns
    -------
    ids : ndarray of int64, shape (N,)
        The object ids, in increasing order.
    terms : dict
        Term name -> ndarray of float64, shape (N,), in ``ids`` order; NaN
        where a term does not apply (an object without an outline).

    """
    labels = np.asarray(labels)
    if labels.shape != probabilities.shape[-2:]:
        raise ValueError(f"labels shape {labels.shape} != outputs shape {probabilities.shape[-2:]}")
    channel = {name: probabilities[i] for i, name in enumerate(heads)}
    ids, compact = _compact(labels)
    count = ids.size
    if count == 0:
        return ids, {}
    area = np.bincount(compact.ravel(), minlength=count + 1)
    objects = np.arange(1, count + 1)
    terms: dict[str, NDArray[np.float64]] = {}
    if flipped:
        terms["flips"] = 1.0 - np.mean([_best_iou(compact, area, other) for other in flipped], axis=0)
    if "distance" in channel:
        terms["centre"] = 1.0 - np.asarray(ndi.maximum(channel["distance"], compact, objects), np.float64)
    if "boundary" in channel:
        outline = _outline(compact)
        pixels = np.bincount(compact[outline], minlength=count + 1)[1:]
        total = np.bincount(
            compact[outline], weights=channel["boundary"][outline].astype(np.float64), minlength=count + 1
        )[1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            terms["outline"] = np.where(pixels > 0, 1.0 - total / pixels, np.nan)
    doubt = 1.0 - np.abs(2.0 * channel["foreground"].astype(np.float64) - 1.0)
    terms["foreground"] = (
        np.bincount(compact.ravel(), weights=doubt.ravel(), minlength=count + 1)[1:] / area[1:]
    )
    return ids, terms


def uncertain_objects(
    labels: NDArray[np.integer[Any]],
    probabilities: NDArray[np.floating[Any]],
    heads: tuple[str, ...],
    flipped: Sequence[NDArray[np.integer[Any]]] = (),
    skip: NDArray[np.bool_] | None = None,
) -> list[UncertainObject]:
    """The objects of ``labels``, most uncertain first, with their centroids.

    Parameters
    ----------
    labels, probabilities, heads, flipped
        As for :func:`uncertainty_terms`.
    skip : ndarray of bool, shape (Y, X), optional
        Objects with a pixel here are left out (e.g. what the person already corrected).

    Returns
    -------
    list of UncertainObject
        Sorted by decreasing score (ties: increasing id); empty without objects.

    """
    labels = np.asarray(labels)
    ids, terms = uncertainty_terms(labels, probabilities, heads, flipped)
    if ids.size == 0:
        return []
    names = [name for name in TERMS if name in terms]
    table = np.stack([terms[name] for name in names])
    known = ~np.isnan(table)
    scores = np.where(known, table, 0.0).sum(axis=0) / np.maximum(known.sum(axis=0), 1)
    _, compact = _compact(labels)
    rows, columns = np.nonzero(compact)
    which = compact[rows, columns]
    area = np.bincount(which, minlength=ids.size + 1)[1:]
    centre_y = np.bincount(which, weights=rows, minlength=ids.size + 1)[1:] / area
    centre_x = np.bincount(which, weights=columns, minlength=ids.size + 1)[1:] / area
    left_out = np.zeros(ids.size, bool)
    if skip is not None:
        left_out[np.unique(compact[np.asarray(skip, bool) & (compact > 0)]) - 1] = True
    order = np.lexsort((ids, -scores))
    return [
        UncertainObject(
            label=int(ids[i]),
            score=float(scores[i]),
            centroid=(float(centre_y[i]), float(centre_x[i])),
            terms={name: float(table[row, i]) for row, name in enumerate(names) if known[row, i]},
        )
        for i in order
        if not left_out[i]
    ]


def rank_plane(
    segmenter: Segmenter,
    plane: NDArray[Any],
    labels: NDArray[np.integer[Any]],
    scale: float,
    config: PostprocessConfig | None = None,
    skip: NDArray[np.bool_] | None = None,
) -> Generator[Progress, None, list[UncertainObject]]:
    """Run the network on a plane and its mirror images, and rank the plane's objects.

    Parameters
    ----------
    segmenter : Segmenter
        The model that segmented the plane.
    plane : ndarray, shape (C, Y, X) or (Y, X)
        The image plane, as segmented.
    labels : ndarray of int, shape (Y, X)
        Its labels as they are now (predicted, perhaps corrected).
    scale : float
        The working scale it was segmented at (``PlaneOutputs.scale``).
    config : PostprocessConfig, optional
        The settings the labels were made with (default: the segmenter's).
    skip : ndarray of bool, shape (Y, X), optional
        See :func:`uncertain_objects`.

    Yields
    ------
    Progress
        Per batch of tiles, then one while post-processing the flips.

    Returns
    -------
    list of UncertainObject
        Most uncertain first; the terms read the average of the flips' outputs.

    """
    outputs = yield from segmenter.predict_plane(plane, scale, flips=True)
    yield Progress(1, 1, "comparing the flipped images' objects")
    flipped = flip_labels(outputs, segmenter.heads, config or segmenter.postprocess)
    return uncertain_objects(labels, outputs.probabilities, segmenter.heads, flipped, skip)


__all__ = [
    "TERMS",
    "UncertainObject",
    "flip_labels",
    "rank_plane",
    "uncertain_objects",
    "uncertainty_terms",
]
