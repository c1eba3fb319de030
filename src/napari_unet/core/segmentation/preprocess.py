"""Image -> network input: channel handling, percentile normalisation, rescaling."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from napari_unet.core.segmentation.axes import check_pixel_type

_PERCENTILE_SAMPLE = 2**22
_RGB_TO_GREY = np.array([0.2125, 0.7154, 0.0721], dtype=np.float32)

CLIP_RANGE = (-5.0, 20.0)
"""Bounds of normalised intensities.  Real images stay well inside (-0.6 to 3.8 over the shared
nuclei, cells and EM sets) and training shows the network about -2.5 to 15; with the bundled
nuclei model a single pixel at -8 or at 100 and beyond adds an object around it."""


def _percentiles(values: NDArray[np.floating[Any]], low: float, high: float) -> tuple[float, float]:
    try:
        with np.errstate(over="raise", invalid="raise"):
            lo, hi = np.percentile(values, [low, high])
    except FloatingPointError:  # values near the type's limits: interpolating between them overflows
        lo, hi = 2 * np.percentile(values * 0.5, [low, high])
    return float(lo), float(hi)


def percentile_normalise(
    image: NDArray[np.generic], low: float = 1.0, high: float = 99.8
) -> NDArray[np.float32]:
    """Map the ``low`` and ``high`` intensity percentiles to 0 and 1.

    Non-finite pixels (NaN, +-Inf) are ignored for the percentiles and set to 0
    in the result.  A constant image becomes all zeros.  Results are clipped to
    :data:`CLIP_RANGE`: a single hot pixel thousands of times brighter than the
    image otherwise makes the network see objects around it (or, near the float
    limits, NaN everywhere).

    Parameters
    ----------
    image : ndarray, bool, integer or float dtype, shape (C, Y, X) or (Y, X)
        Percentiles are taken per channel (over the last two axes).
    low, high : float
        Percentiles in ``[0, 100]``.

    Returns
    -------
    ndarray of float32, same shape as ``image``

    Raises
    ------
    ValueError
        For pixel types other than bool, integer and float
        (see :func:`~napari_unet.core.segmentation.axes.check_pixel_type`).

    """
    raw = np.asarray(image)
    check_pixel_type(raw.dtype)
    # pixels float32 cannot hold exactly keep their precision until the offset is gone: in
    # float32, 2**40 + 100 and 2**40 are the same number and such an image would look constant
    exact_in_float32 = raw.dtype.itemsize <= 2 or raw.dtype == np.float32
    data = raw.astype(np.float32 if exact_in_float32 else np.float64, copy=False)
    squeeze = data.ndim == 2
    if squeeze:
        data = data[None]
    out = np.zeros(data.shape, np.float32)
    for c, channel in enumerate(data):
        finite = np.isfinite(channel)
        if not finite.any():
            continue
        values = channel[finite] if not finite.all() else channel
        if values.size > _PERCENTILE_SAMPLE:  # a strided sample gives the same percentiles, faster
            values = values.ravel()[:: values.size // _PERCENTILE_SAMPLE]
        lo, hi = _percentiles(values, low, high)
        if hi <= lo:
            hi = float(values.max())
            lo = float(values.min())
        if hi <= lo:
            continue
        # halves never overflow, not even between the float64 limits; a quotient that does is clipped
        with np.errstate(over="ignore"):
            scaled = (channel * 0.5 - lo * 0.5) / (hi * 0.5 - lo * 0.5)
        out[c] = np.where(finite, np.clip(scaled, *CLIP_RANGE), 0.0)
    return out[0] if squeeze else out


def match_channels(
    image: NDArray[np.float32], channels: int, low: float = 1.0, high: float = 99.8
) -> NDArray[np.float32]:
    """Adapt a ``(C, Y, X)`` image to the model's input channel count.

    A 1-channel model gets the mean of the input channels (an RGB image gets
    its luminance), normalised again: objects in one channel of several (nuclei
    in the blue of an RGB composite, or in one of seven stains) would otherwise
    reach the network at a fraction of their contrast and be missed.  A
    multi-channel model gets a single channel repeated.

    Parameters
    ----------
    image : ndarray of float32, shape (C, Y, X)
        Normalised channels (see :func:`percentile_normalise`).
    channels : int
        The model's input channels.
    low, high : float
        Percentiles for normalising a reduced image again.

    Raises
    ------
    ValueError
        If the counts cannot be reconciled.

    """
    have = image.shape[0]
    if have == channels:
        return image
    if channels == 1:
        if have in (3, 4):
            grey = np.tensordot(_RGB_TO_GREY, image[:3], axes=1)
        else:
            grey = image.mean(axis=0)
        return percentile_normalise(grey, low, high)[None]
    if have == 1:
        return np.repeat(image, channels, axis=0)
    raise ValueError(f"the model takes {channels} channels but the image has {have}")


def rescale(image: NDArray[Any], factor: float, order: int = 1) -> NDArray[Any]:
    """Resize the last two axes of ``image`` by ``factor``.

    Parameters
    ----------
    image : ndarray, shape (..., Y, X)
    factor : float
        New size is ``round(old * factor)`` (at least 1 pixel).
    order : int
        0: nearest neighbour (for labels and masks, dtype kept); 1: bilinear,
        anti-aliased when shrinking (returns float32).

    """
    if factor == 1.0:
        return image
    size = tuple(max(1, round(s * factor)) for s in image.shape[-2:])
    return resize_to(image, size, order)


def resize_to(image: NDArray[Any], size: tuple[int, int], order: int = 1) -> NDArray[Any]:
    """Resize the last two axes of ``image`` to ``size`` (see :func:`rescale`)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    lead = image.shape[:-2]
    if order == 0:
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64)).reshape(
            1, -1, *image.shape[-2:]
        )
        out = F.interpolate(tensor, size=size, mode="nearest-exact")
        return out.reshape(*lead, *size).numpy().astype(image.dtype)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).reshape(1, -1, *image.shape[-2:])
    shrinking = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=shrinking)
    return out.reshape(*lead, *size).numpy()
