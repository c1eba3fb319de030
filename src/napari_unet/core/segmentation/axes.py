"""Image arrays: axis strings (guessed from a shape, checked), walking and reading planes, pixel types.

Axes are written as in tifffile and OME: ``Y`` and ``X`` are the plane, ``C``
is channels (colour samples included), ``Z`` and ``T`` (and any other letter)
are stack axes segmented plane by plane.  Pixels may be bool, integer or
floating point (:func:`check_pixel_type`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numpy.typing import NDArray

SPATIAL = "YX"
CHANNEL = "C"
_TIFFFILE_ALIASES = {"S": "C"}
_UNNAMED_STACKS = "IQ"  # tifffile's "image sequence" and "unknown": one letter for every such axis
_STACK_NAMES = "ZTUVWABDEFGHJKLMNOPR"
PIXEL_KINDS = "biuf"
"""numpy dtype kinds an image may hold: bool, signed and unsigned integers, floating point."""


def check_pixel_type(dtype: Any) -> None:
    """Accept bool, integer and floating-point pixels.

    Raises
    ------
    ValueError
        For complex, text, date, object and other pixel types.

    """
    if np.dtype(dtype).kind not in PIXEL_KINDS:
        raise ValueError(
            f"unsupported pixel type {np.dtype(dtype)}: images must hold bool, integer or float values"
        )


def guess_axes(shape: tuple[int, ...]) -> str:
    """Guess axes from an array shape.

    A last axis of length 3 or 4 on a 3-D+ array is taken as colour (RGB/RGBA);
    all other leading axes are stacks, named from the right ``Z``, ``T``, then
    further letters.

    Raises
    ------
    ValueError
        For arrays with fewer than 2 dimensions.

    """
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"an image needs at least 2 dimensions, got shape {shape}")
    colour = ndim >= 3 and shape[-1] in (3, 4) and shape[-2] > 4 and shape[-3] > 4
    core = "YXC" if colour else "YX"
    leading = ndim - len(core)
    names = "ZTUVW"
    if leading > len(names):
        raise ValueError(f"too many dimensions to guess axes for shape {shape}; give axes explicitly")
    return "".join(reversed(names[:leading])) + core


def normalise_axes(axes: str, shape: tuple[int, ...]) -> str:
    """Upper-case ``axes``, map tifffile letters, and check them.

    tifffile's ``S`` (samples) is ``C``; its ``I`` and ``Q`` (sequence, unknown)
    become stack axes named from ``Z``, ``T``, ``U``... (each a letter not used
    otherwise), so a plain 6-D TIFF (``QQQQYX``) reads as ``ZTUVYX``.

    Raises
    ------
    ValueError
        If the axes do not fit the shape, repeat a letter, lack Y or X, put X
        before Y, or the image has no pixels (an axis of length 0).

    """
    if 0 in shape:
        raise ValueError(f"the image is empty: shape {tuple(shape)} has an axis of length 0")
    letters = [_TIFFFILE_ALIASES.get(a, a) for a in axes.upper()]
    free = iter(a for a in _STACK_NAMES if a not in letters)
    axes = "".join(next(free) if a in _UNNAMED_STACKS else a for a in letters)
    if len(axes) != len(shape):
        raise ValueError(f"axes {axes!r} do not match an array with {len(shape)} dimensions {shape}")
    if len(set(axes)) != len(axes):
        raise ValueError(f"axes {axes!r} repeat a letter")
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes {axes!r} must include Y and X")
    if axes.index("X") < axes.index("Y"):
        # planes are read and written as (Y, X) everywhere; a transposed store would mix them up
        raise ValueError(f"axes {axes!r} put X before Y; transpose the image so that Y comes first")
    return axes


def stack_axes(axes: str) -> str:
    """The axes walked plane by plane (all but Y, X and C), in array order."""
    return "".join(a for a in axes if a not in SPATIAL + CHANNEL)


def output_shape(axes: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of the label image: the input's shape without its channel axis."""
    return tuple(n for a, n in zip(axes, shape, strict=True) if a != CHANNEL)


def output_axes(axes: str) -> str:
    """Axes of the label image: ``axes`` without ``C``."""
    return axes.replace(CHANNEL, "")


def plane_indices(axes: str, shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Indices over the stack axes, in C order (last stack axis fastest)."""
    stacks = stack_axes(axes)
    yield from np.ndindex(*(n for a, n in zip(axes, shape, strict=True) if a in stacks))


def plane_selector(axes: str, index: tuple[int, ...]) -> tuple[int | slice, ...]:
    """Array index that picks the plane at stack position ``index`` (keeps Y, X, C)."""
    position = iter(index)
    return tuple(slice(None) if a in SPATIAL + CHANNEL else next(position) for a in axes)


def plane_order(axes: str) -> tuple[int, ...]:
    """Transpose order that turns a selected plane into (C, Y, X) (or (Y, X) without C)."""
    kept = [a for a in axes if a in SPATIAL + CHANNEL]
    order = [a for a in "CYX" if a in kept]
    return tuple(kept.index(a) for a in order)


def read_plane(image: Any, axes: str, index: tuple[int, ...]) -> NDArray[Any]:
    """The plane at stack position ``index`` of ``image``, read into memory.

    Parameters
    ----------
    image : array-like
        numpy, dask, zarr, memmap or a lazy TIFF; only the plane is read.
    axes : str
        Normalised axes of ``image``.
    index : tuple of int
        Position along the stack axes (see :func:`plane_indices`).

    Returns
    -------
    ndarray, shape (C, Y, X), or (Y, X) when ``axes`` has no ``C``

    """
    return np.asarray(image[plane_selector(axes, index)]).transpose(plane_order(axes))
