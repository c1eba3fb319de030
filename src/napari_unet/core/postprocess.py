"""Network outputs -> instance labels.

Seeds are the confident object centres (high normalised distance, low
boundary probability); a seeded watershed on the distance map grows them out
to the foreground mask.  Foreground regions that hold no seed become objects
of their own, so no detected object is dropped.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed

from napari_unet.core.config import PostprocessConfig

_FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)


def labels_from_outputs(
    probabilities: NDArray[np.floating],
    heads: tuple[str, ...],
    config: PostprocessConfig,
    min_size: float | None = None,
) -> NDArray[np.int32]:
    """Instance labels from per-head probabilities.

    Parameters
    ----------
    probabilities : ndarray of float, shape (H, Y, X)
        Sigmoid outputs, one channel per head, in ``heads`` order.
    heads : tuple of str
        Must include ``"foreground"``; ``"distance"`` and ``"boundary"`` are
        used when present.
    config : PostprocessConfig
        Thresholds and minimum size.
    min_size : float, optional
        Overrides ``config.min_size`` (e.g. after rescaling), in pixels.

    Returns
    -------
    ndarray of int32, shape (Y, X)
        0 = background, objects numbered 1..N.

    """
    channel = {name: probabilities[i] for i, name in enumerate(heads)}
    foreground = channel["foreground"] > config.foreground_threshold
    if not foreground.any():
        return np.zeros(foreground.shape, np.int32)
    distance = channel.get("distance")
    boundary = channel.get("boundary")
    if distance is not None:
        seeds = foreground & (distance > config.seed_threshold)
        elevation = -distance
    elif boundary is not None:
        seeds = foreground & (boundary < config.seed_threshold)
        elevation = boundary
    else:
        seeds = foreground
        elevation = -ndi.distance_transform_edt(foreground)
    if boundary is not None and distance is not None:
        seeds &= boundary < 0.5
    markers, _ = ndi.label(seeds, structure=_FOUR_CONNECTED)
    mask = None if config.fill_background else foreground
    labels = watershed(elevation, markers, mask=mask).astype(np.int32)
    unseeded, count = ndi.label(foreground & (labels == 0), structure=_FOUR_CONNECTED)
    if count:
        labels[unseeded > 0] = unseeded[unseeded > 0] + labels.max()
    size_limit = config.min_size if min_size is None else min_size
    return remove_small_objects(labels, size_limit)


def remove_small_objects(labels: NDArray[np.integer], min_size: float) -> NDArray[np.int32]:
    """Remove objects smaller than ``min_size`` pixels and renumber 1..N."""
    labels = labels.astype(np.int32, copy=False)
    if min_size > 0:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            labels = np.where(small[labels], 0, labels).astype(np.int32)
    relabelled, _, _ = relabel_sequential(labels)
    return relabelled.astype(np.int32, copy=False)


def stitch_planes(
    previous: NDArray[np.integer], current: NDArray[np.integer], next_id: int, iou_threshold: float = 0.25
) -> tuple[NDArray[np.int64], int]:
    """Give objects in ``current`` the id of the best-overlapping object in ``previous``.

    Parameters
    ----------
    previous : ndarray of int, shape (Y, X)
        Already-numbered labels of the plane before (0 = background).
    current : ndarray of int, shape (Y, X)
        Labels 1..N of this plane.
    next_id : int
        First unused id; objects without a match get new ids from here.
    iou_threshold : float
        Minimum intersection over union for two objects to be joined.

    Returns
    -------
    (labels, next_id)
        ``current`` renumbered, and the first id still unused.

    """
    current = current.astype(np.int64)
    count = int(current.max())
    mapping = np.zeros(count + 1, np.int64)
    if count and previous.any():
        both = (current > 0) & (previous > 0)
        pairs, overlap = np.unique(
            np.stack([current[both], previous[both].astype(np.int64)]), axis=1, return_counts=True
        )
        area_current = np.bincount(current.ravel(), minlength=count + 1)
        prev_ids, prev_areas = np.unique(previous[previous > 0], return_counts=True)
        area_previous = dict(zip(prev_ids.tolist(), prev_areas.tolist(), strict=True))
        order = np.argsort(-overlap)
        taken: set[int] = set()
        for index in order:
            c, p = int(pairs[0, index]), int(pairs[1, index])
            if mapping[c] or p in taken:
                continue
            iou = overlap[index] / (area_current[c] + area_previous[p] - overlap[index])
            if iou >= iou_threshold:
                mapping[c] = p
                taken.add(p)
    for c in range(1, count + 1):
        if not mapping[c]:
            mapping[c] = next_id
            next_id += 1
    return mapping[current], next_id


class PlaneNumbering:
    """Number objects plane by plane so that ids are unique across a stack.

    With ``stitch``, an object overlapping an object of the previous plane
    (the plane before along the last stack axis, same outer position) takes its
    id, so a Z stack gives 3-D objects.

    Parameters
    ----------
    stitch : bool
        Join objects across consecutive planes.

    """

    def __init__(self, stitch: bool = False) -> None:
        self.stitch = stitch
        self.next_id = 1
        self._previous: tuple[tuple[int, ...], NDArray[np.int32]] | None = None

    def add(self, index: tuple[int, ...], labels: NDArray[np.integer]) -> NDArray[np.int32]:
        """Renumber one plane's labels (1..N) given its stack position ``index``."""
        previous = self._previous
        follows = (
            previous is not None
            and len(index) > 0
            and previous[0][:-1] == index[:-1]
            and previous[0][-1] + 1 == index[-1]
        )
        if self.stitch and follows and previous is not None:
            stitched, self.next_id = stitch_planes(previous[1], labels, self.next_id)
            numbered = stitched.astype(np.int32)
        else:
            numbered = np.where(labels > 0, labels + (self.next_id - 1), 0).astype(np.int32)
            if numbered.any():
                self.next_id = int(numbered.max()) + 1
        self._previous = (index, numbered)
        return numbered
