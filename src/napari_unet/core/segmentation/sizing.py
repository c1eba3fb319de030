"""Object size: the median diameter of labelled objects, estimating it in an image, the working scale.

A model sees objects best at the size it was trained at
(``PreprocessConfig.object_diameter``); an image is resized by
:func:`working_scale` so that its objects appear at that size.  Their size in
the image is given by the person or estimated with the model itself
(:func:`estimate_diameter`), in the Cellpose manner.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray

from napari_unet.core.config import PostprocessConfig, PreprocessConfig
from napari_unet.core.segmentation.postprocess import labels_from_outputs
from napari_unet.core.segmentation.preprocess import rescale
from napari_unet.core.segmentation.tiling import thread_pool

ESTIMATE_CROP = 512
"""Edge of the central crop the estimate measures, in pixels at the scale of each pass."""

SCALE_LIMITS = (0.1, 4.0)
"""Least and largest working scale: beyond these, a mis-estimate costs more than it can gain."""

Predict = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""Network outputs (H, Y, X) of a normalised (C, Y, X) image at the scale it is given."""


def median_diameter(labels: NDArray[np.integer]) -> float | None:
    """Median equivalent-circle diameter of the objects in ``labels``.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Instance labels, 0 = background.

    Returns
    -------
    float or None
        ``sqrt(4 * area / pi)`` at the median object area, or ``None`` when
        there are no objects.

    """
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    if areas.size == 0:
        return None
    return float(np.sqrt(4.0 * np.median(areas) / np.pi))


def working_scale(diameter: float | None, preprocess: PreprocessConfig) -> float:
    """Resize factor that brings objects of ``diameter`` pixels to the model's size.

    1 when the model works at the native pixel size (``preprocess.rescale`` off)
    or no diameter is known; otherwise ``object_diameter / diameter`` clipped to
    :data:`SCALE_LIMITS`.
    """
    if not diameter or not preprocess.rescale:
        return 1.0
    return float(np.clip(preprocess.object_diameter / diameter, *SCALE_LIMITS))


def sizing_postprocess(postprocess: PostprocessConfig) -> PostprocessConfig:
    """Post-processing that objects are measured with: default thresholds, the model's joining.

    Default thresholds and minimum size, not the model's or the person's: a
    minimum size tuned for the model's scale (``phase-cells``: 300 px) would
    delete every object of a view the estimate shrinks, and the estimate must
    not move when a person drags a post-processing slider.  The model's join
    threshold and background filling are kept: a nucleus cut in two would be
    measured as two small ones and the estimate would run away to smaller sizes.
    """
    return PostprocessConfig(
        fill_background=postprocess.fill_background, join_threshold=postprocess.join_threshold
    )


def estimate_diameter(
    normalised: NDArray[np.float32],
    predict: Predict,
    heads: tuple[str, ...],
    preprocess: PreprocessConfig,
    postprocess: PostprocessConfig,
    parallel: bool = False,
) -> float | None:
    """Median object diameter (pixels) in a normalised (C, Y, X) plane.

    A model sees objects far from its own size poorly: much larger ones it
    cuts into pieces of about its own size.  So the estimate is refined from
    two starting scales, the model's own and a 4x smaller view (where large
    objects look normal), each re-measured at the scale its estimate implies.
    The largest estimate wins, preferring those whose final pass saw objects
    near the model's size: cut-up objects only ever look smaller.

    Parameters
    ----------
    normalised : ndarray of float32, shape (C, Y, X)
    predict : callable
        The model's outputs for a normalised image (see :data:`Predict`).
    heads : tuple of str
        The model's output heads.
    preprocess : PreprocessConfig
        The model's; gives the size it was trained at.
    postprocess : PostprocessConfig
        The model's; see :func:`sizing_postprocess` for what of it is used.
    parallel : bool
        Refine the two starting scales in two threads (on CPU, one per core).

    Returns
    -------
    float or None
        ``None`` if no object is found.

    """
    measure = sizing_postprocess(postprocess)

    def refine(start: float) -> tuple[float, float] | None:
        return _refine_diameter(normalised, start, predict, heads, preprocess, measure)

    starts = (1.0, 0.25)
    threads = torch.get_num_threads()
    if parallel and threads > 1:  # the two refinements are independent
        try:
            with thread_pool(len(starts), threads) as pool:
                found = list(pool.map(refine, starts))
        finally:
            torch.set_num_threads(threads)  # the workers changed torch's process-wide default
    else:
        found = [refine(start) for start in starts]
    estimates = [estimate for estimate in found if estimate]
    if not estimates:
        return None
    target = preprocess.object_diameter
    near = [d for d, seen in estimates if abs(math.log(seen / target)) < math.log(1.6)]
    return max(near or [d for d, _ in estimates])


def _refine_diameter(
    normalised: NDArray[np.float32],
    scale: float,
    predict: Predict,
    heads: tuple[str, ...],
    preprocess: PreprocessConfig,
    measure: PostprocessConfig,
) -> tuple[float, float] | None:
    """(diameter in the plane, diameter as the last pass saw it), from a start ``scale``."""
    result: tuple[float, float] | None = None
    for _ in range(3):
        crop_edge = int(ESTIMATE_CROP / scale)
        _, height, width = normalised.shape
        y0 = max(0, (height - crop_edge) // 2)
        x0 = max(0, (width - crop_edge) // 2)
        crop = normalised[:, y0 : y0 + crop_edge, x0 : x0 + crop_edge]
        seen = median_diameter(labels_from_outputs(predict(rescale(crop, scale)), heads, measure))
        if seen is None:
            return result
        result = (seen / scale, seen)
        new_scale = working_scale(seen / scale, preprocess)
        if abs(math.log(new_scale / scale)) < math.log(1.15):
            break
        scale = new_scale
    return result
