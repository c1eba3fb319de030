"""npe2 reader: napari-unet label files open as Labels layers.

The reader takes only complete napari-unet label files (what ``napari-unet
segment`` and this plugin's writer save); for any other TIFF it returns None,
so napari's own reader opens it.  The layer's metadata holds the file's
provenance under ``"provenance"`` and its axes under ``"axes"``; a pixel size in
micrometres becomes the layer's scale and units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from napari_unet.core.io.label_files import LabelFile, is_label_file, read_label_file

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[str | Sequence[str]], list[LayerData]]


def get_reader(path: str | Sequence[str]) -> ReaderFunction | None:
    """The reader for ``path`` if every file in it is a napari-unet label file, else None."""
    paths = [path] if isinstance(path, str) else list(path)
    if not paths or not all(is_label_file(p) for p in paths):
        return None
    return read_labels


def read_labels(path: str | Sequence[str], stack: bool = False) -> list[LayerData]:
    """One ``labels`` layer per napari-unet label file in ``path``.

    ``stack`` is accepted for npe2 and ignored: each file is its own layer.
    """
    paths = [path] if isinstance(path, str) else list(path)
    layers = []
    for name in paths:
        contents = read_label_file(name)
        if contents is None:  # replaced since get_reader looked at it
            raise ValueError(f"{name}: no longer a napari-unet label file")
        layers.append((contents.labels, layer_attributes(Path(name), contents), "labels"))
    return layers


def _stem(path: Path) -> str:
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if path.name.lower().endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def layer_attributes(path: Path, contents: LabelFile) -> dict[str, Any]:
    """Name, metadata (provenance, axes) and, with a known pixel size, scale and units of the layer."""
    attributes: dict[str, Any] = {
        "name": _stem(path),
        "metadata": {"provenance": contents.provenance, "axes": contents.axes},
        "axis_labels": tuple(contents.axes.lower()),
    }
    size = contents.pixel_size
    if size is not None and size.unit == "µm":
        by_axis = {"X": size.x, "Y": size.y, "Z": size.z}
        attributes["scale"] = tuple(by_axis.get(axis) or 1.0 for axis in contents.axes)
        attributes["units"] = tuple("micrometer" if by_axis.get(axis) else "pixel" for axis in contents.axes)
    return attributes


__all__ = ["get_reader", "layer_attributes", "read_labels"]
