"""napari-unet label files as whole arrays: read one back, write labels as one.

A label file is what ``napari-unet segment`` writes (:class:`~napari_unet.core.io.stacks.LabelStackWriter`):
an integer TIFF whose first page's description is JSON holding the shape, the
axes, ``format: napari-unet-labels``, the pixel size and the provenance (how the
labels were made).  :func:`read_label_file` opens such a file and nothing else;
:func:`write_label_file` writes labels in the same form, in the smallest
unsigned integer type that holds their ids, keeping a provenance record given
with them.  The napari reader and writer translate these to and from layers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from napari_unet.core.io.stacks import LabelStackWriter, PixelSize, TiffImage, read_label_metadata

STRUCTURE_KEYS = ("shape", "axes", "format", "pixel_size")
"""Entries of a label file's description that describe the file; the others are its provenance."""


@dataclass
class LabelFile:
    """A napari-unet label file's contents.

    Attributes
    ----------
    labels : ndarray of unsigned int
        Instance ids, 0 = background, in the file's pixel type.
    axes : str
        Axis letters of ``labels`` (e.g. ``"YX"``, ``"ZYX"``).
    provenance : dict
        How the labels were made (model, settings, input, versions, object count).
    pixel_size : PixelSize or None

    """

    labels: NDArray[np.unsignedinteger[Any]]
    axes: str
    provenance: dict[str, Any] = field(default_factory=dict)
    pixel_size: PixelSize | None = None


def is_label_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a complete napari-unet label file."""
    return read_label_metadata(path) is not None


def read_label_file(path: str | os.PathLike[str]) -> LabelFile | None:
    """The labels, axes, provenance and pixel size of a napari-unet label file; None for any other file.

    Raises
    ------
    InputError
        If the file is a napari-unet label file whose pixels cannot be read.

    """
    metadata = read_label_metadata(path)
    if metadata is None:
        return None
    with TiffImage(path) as image:
        labels = np.asarray(image).reshape(tuple(int(n) for n in metadata["shape"]))
        pixel_size = image.pixel_size
    provenance = {key: value for key, value in metadata.items() if key not in STRUCTURE_KEYS}
    return LabelFile(labels, str(metadata["axes"]), provenance, pixel_size)


def smallest_label_dtype(max_label: int) -> np.dtype[Any]:
    """The smallest of uint8, uint16 and uint32 that holds ``max_label``."""
    for kind in (np.uint8, np.uint16, np.uint32):
        if max_label <= np.iinfo(kind).max:
            return np.dtype(kind)
    raise ValueError(f"label {max_label} does not fit in uint32")


def write_label_file(path: str | os.PathLike[str], contents: LabelFile) -> Path:
    """Write ``contents`` as a napari-unet label file, atomically, in the smallest type that holds its ids.

    The provenance is kept as given, except ``objects``, which counts the ids
    written.

    Raises
    ------
    ValueError
        If the labels are not integers, are negative, do not fit in uint32, or
        do not match the axes.

    """
    labels = np.asarray(contents.labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{path}: labels must be integers, got {labels.dtype}")
    if labels.ndim < 2 or len(contents.axes) != labels.ndim:
        raise ValueError(f"{path}: labels of shape {labels.shape} do not fit axes {contents.axes!r}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{path}: labels must not be negative (smallest id {labels.min()})")
    dtype = smallest_label_dtype(int(labels.max()) if labels.size else 0)
    planes = labels.reshape(-1, *labels.shape[-2:])
    with LabelStackWriter(
        path, labels.shape, contents.axes, contents.provenance, contents.pixel_size, dtype.type
    ) as writer:
        for plane in planes:
            writer.write(plane)
    return Path(path)


__all__ = [
    "LabelFile",
    "is_label_file",
    "read_label_file",
    "smallest_label_dtype",
    "write_label_file",
]
