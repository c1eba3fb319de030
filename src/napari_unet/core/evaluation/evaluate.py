"""Scoring a model (or the classical baseline) on labelled images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.evaluation.metrics import summarise
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.progress import run
from napari_unet.core.segmentation.postprocess import remove_small_objects
from napari_unet.core.segmentation.segmenter import Segmenter

LabelledImage = tuple[str, NDArray[Any], NDArray[Any]]


def predict_set(
    bundle: ModelBundle,
    pairs: Sequence[LabelledImage],
    inference: InferenceConfig | None = None,
    postprocess: PostprocessConfig | None = None,
) -> list[NDArray[np.int32]]:
    """Segment every image of ``(name, image, labels)`` pairs."""
    segmenter = Segmenter(bundle, inference, postprocess)
    predictions = []
    for _, image, _ in pairs:
        axes = "CYX" if image.ndim == 3 else "YX"
        predictions.append(run(segmenter.segment(image, axes=axes)).labels)
    return predictions


def evaluate_bundle(
    bundle: ModelBundle,
    pairs: Sequence[LabelledImage],
    device: str = "auto",
    inference: InferenceConfig | None = None,
    postprocess: PostprocessConfig | None = None,
) -> dict[str, float]:
    """The metrics of :func:`~napari_unet.core.evaluation.metrics.summarise` for ``bundle`` on ``(name, image, labels)`` pairs."""
    inference = inference or InferenceConfig(device=device)
    predictions = predict_set(bundle, pairs, inference, postprocess)
    return summarise([labels for _, _, labels in pairs], predictions)


def classical_segmentation(image: NDArray[Any], min_size: int = 10) -> NDArray[np.int32]:
    """Otsu threshold + distance-transform watershed: the classical baseline.

    Parameters
    ----------
    image : ndarray, shape (Y, X) or (C, Y, X)
        Bright objects on a dark background.
    min_size : int
        Objects smaller than this are dropped.

    """
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 3:
        data = data.mean(axis=0)
    smooth = gaussian(data, sigma=1.0)
    if smooth.max() == smooth.min():
        return np.zeros(data.shape, np.int32)
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    distance = ndi.distance_transform_edt(mask)
    peaks = peak_local_max(distance, min_distance=5, labels=ndi.label(mask)[0], exclude_border=False)
    markers = np.zeros(data.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    return remove_small_objects(labels, min_size)


def evaluate_classical(pairs: Sequence[LabelledImage]) -> dict[str, float]:
    """The metrics of :func:`~napari_unet.core.evaluation.metrics.summarise` for :func:`classical_segmentation`."""
    predictions = [classical_segmentation(image) for _, image, _ in pairs]
    return summarise([labels for _, _, labels in pairs], predictions)
