"""npe2 writer: a Labels layer saved as a napari-unet label file (TIFF).

The labels are stored in the smallest unsigned integer type that holds their
ids (uint8, uint16 or uint32); the provenance in the layer's metadata (what
this plugin's reader put there, or the widget's segmentation) is kept; a scale
in a length unit is stored as the pixel size (TIFF resolution tags, which
ImageJ and Fiji read, and in the file's metadata).  The file opens again with
this plugin's reader as the same layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pint

from napari_unet.core.io.label_files import LabelFile, write_label_file
from napari_unet.core.io.stacks import PixelSize

_AXIS_LETTERS = set("TZCQYX")


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """Write one Labels layer's ``data`` to ``path`` (npe2 single-layer writer).

    Parameters
    ----------
    path : str
        A ``.tif`` or ``.tiff`` file.
    data : array-like of int
        The layer's labels.
    attributes : dict
        The layer's state (``metadata``, ``scale``, ``units``, ``axis_labels``, ``name``).

    Returns
    -------
    list of str
        ``[path]``.

    Raises
    ------
    ValueError
        One line naming the layer and the reason, e.g. negative or non-integer
        labels, or labels with more ids than uint32 holds.

    """
    labels = np.asarray(data)
    metadata = attributes.get("metadata") or {}
    axes = _axes(labels.ndim, metadata.get("axes"), attributes.get("axis_labels"))
    provenance = metadata.get("provenance")
    contents = LabelFile(
        labels,
        axes,
        dict(provenance) if isinstance(provenance, dict) else {},
        _pixel_size(axes, attributes.get("scale"), attributes.get("units")),
    )
    try:
        write_label_file(path, contents)
    except ValueError as error:
        raise ValueError(f"layer {attributes.get('name', '')!r}: {error}") from None
    return [path]


def _axes(ndim: int, stored: Any, labels: Sequence[str] | None) -> str:
    """The layer's axis letters: as read from its file, else from single-letter axis labels, else guessed."""
    if isinstance(stored, str) and len(stored) == ndim:
        return stored
    letters = "".join(str(label).upper() for label in labels or ())
    if len(letters) == ndim and set(letters) <= _AXIS_LETTERS and len(set(letters)) == ndim:
        return letters
    return {2: "YX", 3: "ZYX", 4: "TZYX"}.get(ndim, "Q" * (ndim - 4) + "TZYX")


def _pixel_size(axes: str, scale: Sequence[float] | None, units: Sequence[Any] | None) -> PixelSize | None:
    """The pixel size in µm from a scale whose Y and X units are lengths, else None."""
    if scale is None or units is None:
        return None
    microns = [_in_microns(float(step), unit) for step, unit in zip(scale, units, strict=True)]
    by_axis = dict(zip(axes, microns, strict=True))
    if by_axis.get("X") is None or by_axis.get("Y") is None:
        return None
    return PixelSize(by_axis["X"], by_axis["Y"], by_axis.get("Z"))


def _in_microns(step: float, unit: Any) -> float | None:
    """``step`` of ``unit`` (a pint unit or its name) in µm; None when the unit is no length."""
    registry = getattr(unit, "_REGISTRY", None) or pint.get_application_registry()
    try:
        return float(registry.Quantity(step, unit).to("micrometer").magnitude)
    except (pint.errors.DimensionalityError, pint.errors.UndefinedUnitError, AttributeError, TypeError):
        return None


__all__ = ["write_labels"]
