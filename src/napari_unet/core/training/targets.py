"""Instance labels -> per-head training targets."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from napari_unet.core.config import HEAD_NAMES


def normalised_distance(labels: NDArray[np.integer]) -> NDArray[np.float32]:
    """Distance to each object's outline divided by that object's maximum.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)

    Returns
    -------
    ndarray of float32, shape (Y, X)
        1 at each object's most interior pixel, falling to 0 at its outline
        and in the background.

    """
    interior = (labels > 0) & ~find_boundaries(labels, mode="inner")
    distance = ndi.distance_transform_edt(interior).astype(np.float32)
    if labels.max() == 0:
        return distance
    peak = ndi.maximum(distance, labels, index=np.arange(labels.max() + 1)).astype(np.float32)
    peak[peak == 0] = 1.0
    return distance / peak[labels]


def head_targets(labels: NDArray[np.integer], heads: tuple[str, ...] = HEAD_NAMES) -> NDArray[np.float32]:
    """Training targets for each output head.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Instance labels, 0 = background.
    heads : tuple of str
        Heads to build, in the model's order.

    Returns
    -------
    ndarray of float32, shape (len(heads), Y, X)
        Values in ``[0, 1]``.

    """
    labels = np.asarray(labels)
    out = np.empty((len(heads), *labels.shape), dtype=np.float32)
    for i, head in enumerate(heads):
        if head == "foreground":
            out[i] = labels > 0
        elif head == "boundary":
            out[i] = find_boundaries(labels, mode="inner")
        elif head == "distance":
            out[i] = normalised_distance(labels)
        else:
            raise ValueError(f"unknown head {head!r}")
    return out
