"""Network outputs -> instance labels.

Seeds are the confident object centres (high normalised distance, low
boundary probability); a seeded watershed on the distance map grows them out
to the foreground mask.  Foreground regions that hold no seed become objects
of their own, so no detected object is dropped.

Objects under the minimum size lose their seed and the foreground is flooded
again, so a fragment joins the object it touches; what is still too small
(an isolated speck) is removed.

Touching objects are joined where the line between them runs through the
middle of an object rather than along a dip of the distance map: two seeds
of one large, textured nucleus are joined, two touching nuclei are not
(``join_over_saddles``).  Objects the network is unsure of as a whole (mean
foreground probability under ``object_probability``) are dropped last.

Network outputs kept per plane (:class:`PlaneOutputs`) re-label under new
settings without the network (:func:`relabel`); planes of a stack are
numbered apart or stitched by :class:`PlaneNumbering`.

Within the foreground mask each connected region floods on its own, so only
regions holding two or more seeds need a watershed, each on its own bounding
box; a region with one seed is that seed's object.  On a 4096 x 4096 mosaic of
nuclei this gives the same labels as one whole-image watershed, several times
faster (``benchmarks/segment_speed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.segmentation import watershed

from napari_unet.core.config import PostprocessConfig

_FOUR_CONNECTED = ndi.generate_binary_structure(2, 1)

Plane = tuple[int, ...]
"""Stack position of a plane (``()`` for a single 2-D image)."""


@dataclass
class PlaneOutputs:
    """Network outputs for one plane, at the plane's own resolution.

    Attributes
    ----------
    probabilities : ndarray of float32, shape (H, Y, X)
        Sigmoid outputs per head.
    scale : float
        Factor the plane was resized by before the network.
    blank : bool
        The plane was blank (one value, see :func:`~napari_unet.core.segmentation.domain.is_blank`):
        it has no objects, whatever the settings; the network did not run on it.
    flips : ndarray of float32, shape (4, H, Y, X), optional
        Each flipped image's outputs, flipped back (``probabilities`` is then
        their average), when asked for: see
        :mod:`~napari_unet.core.segmentation.uncertainty`.

    """

    probabilities: NDArray[np.float32]
    scale: float
    blank: bool = False
    flips: NDArray[np.float32] | None = None


def plane_labels(
    outputs: PlaneOutputs, heads: tuple[str, ...], config: PostprocessConfig
) -> NDArray[np.int32]:
    """Instance labels (1..N) of one plane's outputs; ``config.min_size`` counts at the model's scale.

    A blank plane has none (a model that fills the background, such as
    ``em-membranes``, would otherwise make it one object).
    """
    if outputs.blank:
        return np.zeros(outputs.probabilities.shape[-2:], np.int32)
    return labels_from_outputs(
        outputs.probabilities, heads, config, min_size=config.min_size / outputs.scale**2
    )


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
    size_limit = config.min_size if min_size is None else min_size

    def flood(markers: NDArray[np.integer]) -> NDArray[np.int32]:
        if config.fill_background:
            return watershed(elevation, markers).astype(np.int32)
        return flood_regions(elevation, markers, foreground)

    labels = flood(markers)
    fewer = without_small_seeds(labels, markers, size_limit)
    if fewer is not None:  # fragments go to the neighbours that flood them
        labels = flood(fewer)
    if distance is not None and config.join_threshold < 1.0:
        labels = join_over_saddles(labels, distance, config.join_threshold)
    if config.object_probability > 0.0:
        labels = without_doubtful_objects(labels, channel["foreground"], config.object_probability)
    return remove_small_objects(labels, size_limit)


def without_doubtful_objects(
    labels: NDArray[np.integer], foreground: NDArray[np.floating], threshold: float
) -> NDArray[np.int32]:
    """Set to background the objects whose mean foreground probability is under ``threshold``.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Objects numbered 1..N (0 = background).
    foreground : ndarray of float, shape (Y, X)
        The foreground probability.
    threshold : float
        Lowest mean probability an object keeps.

    Returns
    -------
    ndarray of int32, shape (Y, X)
        The same ids, the dropped objects' pixels 0 (not renumbered).

    """
    labels = labels.astype(np.int32, copy=False)
    count = int(labels.max()) if labels.size else 0
    if count == 0:
        return labels
    flat = labels.ravel()
    area = np.bincount(flat, minlength=count + 1)
    total = np.bincount(flat, weights=foreground.ravel().astype(np.float64), minlength=count + 1)
    kept = total >= threshold * area  # mean >= threshold, without dividing by empty ids
    kept[0] = True
    return np.where(kept[labels], labels, 0).astype(np.int32)


def join_over_saddles(
    labels: NDArray[np.integer], distance: NDArray[np.floating], threshold: float
) -> NDArray[np.int32]:
    """Join touching objects whose shared border lies high on the distance map.

    The distance head is about 1 at every object's centre and falls to 0 at
    its outline, so the border between two objects that really touch runs
    along a valley.  Where it instead runs high -- above ``threshold`` times
    the lower of the two objects' peaks -- the watershed has cut one object
    in two, and the pieces are joined (chains of such pairs become one
    object).

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Objects numbered 1..N (0 = background).
    distance : ndarray of float, shape (Y, X)
        The normalised-distance output.
    threshold : float
        Fraction of the lower peak; 1 or more joins nothing.

    Returns
    -------
    ndarray of int32, shape (Y, X)
        Objects renumbered 1..N' (in order of their lowest old number).

    """
    labels = labels.astype(np.int32, copy=False)
    count = int(labels.max()) if labels.size else 0
    if threshold >= 1.0 or count < 2:
        return labels
    first, second, height = [], [], []
    for a, b, da, db in (
        (labels[:, :-1], labels[:, 1:], distance[:, :-1], distance[:, 1:]),
        (labels[:-1], labels[1:], distance[:-1], distance[1:]),
    ):
        touching = (a != b) & (a > 0) & (b > 0)
        first.append(a[touching])
        second.append(b[touching])
        height.append((da[touching] + db[touching]) / 2)
    a, b, border = np.concatenate(first), np.concatenate(second), np.concatenate(height)
    if not a.size:
        return labels
    # the highest point of each pair's border (sorted by pair, the maximum of each run) ...
    pair = np.minimum(a, b).astype(np.int64) * (count + 1) + np.maximum(a, b)
    order = np.argsort(pair, kind="stable")
    pair, border = pair[order], border[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    saddle = np.maximum.reduceat(border, starts)
    low, high = pair[starts] // (count + 1), pair[starts] % (count + 1)
    # ... against the lower of the two objects' peaks
    peak = np.zeros(count + 1, np.float64)
    boxes = ndi.find_objects(labels)
    for label in np.union1d(low, high):  # only objects that touch another, each in its own box
        box = boxes[label - 1]
        peak[label] = distance[box][labels[box] == label].max()
    joined = saddle > threshold * np.minimum(peak[low], peak[high])
    if not joined.any():
        return labels
    graph = coo_matrix(
        (np.ones(int(joined.sum())), (low[joined], high[joined])), shape=(count + 1, count + 1)
    )
    _, component = connected_components(graph, directed=False)
    # each group takes its lowest member's id (0 stays background), then ids are renumbered in order
    smallest = np.full(component.max() + 1, count + 1, np.int64)
    np.minimum.at(smallest, component, np.arange(count + 1))
    representative = smallest[component]
    representative[0] = 0
    return remove_small_objects(representative.astype(np.int32)[labels], 0)


def without_small_seeds(
    labels: NDArray[np.integer], markers: NDArray[np.integer], min_size: float
) -> NDArray[np.int32] | None:
    """The markers without those whose flooded object is under ``min_size`` pixels.

    Flooding again from the remaining markers gives a fragment's pixels to the
    object it touches (when it shares a foreground region with one) instead of
    deleting them: a cell cut into a big piece and a small one becomes whole.
    On ``cells-usiigaci/train`` (``phase-cells``, minimum size 300 px at the
    model's scale) this raised AP@0.5 from 0.737 to 0.743 and lowered the
    adapted Rand error from 0.392 to 0.341 against deleting the fragments.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Flooded from ``markers``: marker ``k`` floods object ``k``.
    markers : ndarray of int, shape (Y, X)
        Seeds numbered 1..M.
    min_size : float
        Objects under this many pixels lose their seed.

    Returns
    -------
    ndarray of int32 or None
        Markers renumbered 1..M', or ``None`` when no seeded object is small.

    """
    count = int(markers.max())
    if min_size <= 0 or count == 0:
        return None
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[: count + 1]
    small = sizes < min_size
    small[0] = False
    if not small.any():
        return None
    kept = ~small
    kept[0] = False
    new_id = np.where(kept, np.cumsum(kept), 0).astype(np.int32)
    return new_id[markers]


def flood_regions(
    elevation: NDArray[np.floating], markers: NDArray[np.integer], mask: NDArray[np.bool_]
) -> NDArray[np.int32]:
    """Seeded watershed inside ``mask``; mask regions without a marker numbered after the markers.

    Gives exactly the labels of ``watershed(elevation, markers, mask=mask)``
    followed by numbering the unflooded regions of ``mask`` (4-connected) from
    ``markers.max() + 1`` in raster order, but runs the watershed only on the
    bounding boxes of regions that hold two or more markers.

    Parameters
    ----------
    elevation : ndarray of float, shape (Y, X)
        Flooded from low to high.
    markers : ndarray of int, shape (Y, X)
        Seeds numbered 1..M (0 = none), each inside ``mask`` and 4-connected.
    mask : ndarray of bool, shape (Y, X)

    Returns
    -------
    ndarray of int32, shape (Y, X)

    """
    regions, count = ndi.label(mask, structure=_FOUR_CONNECTED)
    marker_count = int(markers.max())
    seeded = markers > 0
    region_of_marker = np.zeros(marker_count + 1, np.int64)
    region_of_marker[markers[seeded]] = regions[seeded]
    markers_per_region = np.bincount(region_of_marker[1:], minlength=count + 1)
    # one label per region: its only marker, or a new number after the markers if it has none
    region_label = np.zeros(count + 1, np.int32)
    single = markers_per_region[region_of_marker[1:]] == 1
    region_label[region_of_marker[1:][single]] = np.arange(1, marker_count + 1, dtype=np.int32)[single]
    region_label[0] = 0
    unseeded = np.flatnonzero(markers_per_region[1:] == 0) + 1
    region_label[unseeded] = marker_count + 1 + np.arange(unseeded.size, dtype=np.int32)
    labels = region_label[regions]
    boxes = ndi.find_objects(regions)
    for region in np.flatnonzero(markers_per_region[1:] > 1) + 1:
        box = boxes[region - 1]
        inside = regions[box] == region
        flooded = watershed(elevation[box], np.where(inside, markers[box], 0), mask=inside)
        labels[box][inside] = flooded[inside]
    return labels


def remove_small_objects(labels: NDArray[np.integer], min_size: float) -> NDArray[np.int32]:
    """Remove objects smaller than ``min_size`` pixels and renumber 1..N."""
    labels = labels.astype(np.int32, copy=False)
    if not labels.size or labels.max() <= 0:
        return np.zeros(labels.shape, np.int32)
    sizes = np.bincount(labels.ravel())
    kept = sizes >= min_size if min_size > 0 else sizes > 0
    kept[0] = False
    # one lookup renumbers the kept ids 1..N in their order and drops the rest
    new_id = np.where(kept, np.cumsum(kept), 0).astype(np.int32)
    return new_id[labels]


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


def relabel(
    outputs: dict[Plane, PlaneOutputs], heads: tuple[str, ...], stitch: bool, config: PostprocessConfig
) -> dict[Plane, NDArray[np.int32]]:
    """Labels of every cached plane under new post-processing settings (no network).

    Planes are numbered apart (or joined, with ``stitch``) in stack order, as
    :meth:`~napari_unet.core.segmentation.segmenter.Segmenter.segment` numbers them.

    Parameters
    ----------
    outputs : dict
        Stack position -> that plane's network outputs.
    heads : tuple of str
        The model's output heads, in the outputs' channel order.
    stitch : bool
        Join objects across consecutive planes (see :class:`PlaneNumbering`).
    config : PostprocessConfig

    Returns
    -------
    dict
        Stack position -> int32 labels, ids unique across the planes.

    """
    numbering = PlaneNumbering(stitch)
    return {
        plane: numbering.add(plane, plane_labels(outputs[plane], heads, config)) for plane in sorted(outputs)
    }
