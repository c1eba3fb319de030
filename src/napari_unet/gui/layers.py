"""napari layers <-> arrays: axes of a layer, planes, the result layer, and edit tracking."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import napari
import numpy as np
from numpy.typing import NDArray

from napari_unet.core.segmentation.axes import (
    CHANNEL,
    guess_axes,
    output_axes,
    output_shape,
    plane_selector,
    stack_axes,
)

Plane = tuple[int, ...]
_STACK_NAMES = "ZTUVW"

UNDO_PIXELS = 4_000_000
"""A write of up to this many changed pixels is one step that Ctrl+Z undoes.

napari keeps each step's indices and old values (~30 bytes a pixel in 3-D);
larger writes go to the layer directly and cannot be undone.
"""


def labels_name(image_layer: napari.layers.Image) -> str:
    """Name of the result layer of an image layer: ``<image> labels``."""
    return f"{image_layer.name} labels"


def image_data(layer: napari.layers.Image) -> Any:
    """The full-resolution array of an image layer (level 0 of a multiscale one)."""
    return layer.data[0] if layer.multiscale else layer.data


def layer_axes(layer: napari.layers.Image) -> str:
    """Axes of a layer's data, guessed from its shape and whether napari shows it as RGB."""
    shape = tuple(image_data(layer).shape)
    if layer.rgb:
        return "".join(reversed(_STACK_NAMES[: len(shape) - 3])) + "YXC"
    axes = guess_axes(shape)
    if axes.endswith(CHANNEL):  # napari shows the last axis as a stack, not as colour
        axes = "".join(reversed(_STACK_NAMES[: len(shape) - 2])) + "YX"
    return axes


def _displayed_axes(layer: napari.layers.Image, axes: str) -> str:
    """Axes of the layer's own dimensions (napari counts an RGB axis out of ``ndim``)."""
    return axes[:-1] if layer.rgb else axes


def labels_transform(layer: napari.layers.Image, axes: str) -> dict[str, tuple[float, ...]]:
    """Scale and translate of the result layer: the image's, without its channel axis."""
    shown = _displayed_axes(layer, axes)
    keep = [i for i, a in enumerate(shown) if a != CHANNEL]
    return {
        "scale": tuple(float(layer.scale[i]) for i in keep),
        "translate": tuple(float(layer.translate[i]) for i in keep),
    }


def current_plane(viewer: napari.Viewer, layer: napari.layers.Image, axes: str) -> Plane:
    """Stack position of the plane the viewer shows, in the image's data coordinates."""
    shown = _displayed_axes(layer, axes)
    position = layer.world_to_data(viewer.dims.point[-layer.ndim :])
    shape = image_data(layer).shape
    index = []
    for i, a in enumerate(shown):
        if a in stack_axes(axes):
            index.append(int(np.clip(round(float(position[i])), 0, shape[i] - 1)))
    return tuple(index)


def labels_plane_selector(axes: str, plane: Plane) -> tuple[int | slice, ...]:
    """Index of one plane in the label image of an image with ``axes``."""
    return plane_selector(output_axes(axes), plane)


def ensure_labels_layer(
    viewer: napari.Viewer, image_layer: napari.layers.Image, axes: str
) -> napari.layers.Labels:
    """The image's result layer, created empty (or reshaped) when needed, aligned with the image."""
    shape = output_shape(axes, tuple(image_data(image_layer).shape))
    name = labels_name(image_layer)
    transform = labels_transform(image_layer, axes)
    if name in viewer.layers and isinstance(viewer.layers[name], napari.layers.Labels):
        layer = viewer.layers[name]
        if layer.data.shape != shape:
            layer.data = np.zeros(shape, np.int32)
        layer.scale, layer.translate = transform["scale"], transform["translate"]
        return layer
    return viewer.add_labels(np.zeros(shape, np.int32), name=name, **transform)


def int32_labels(labels: NDArray[np.integer[Any]] | NDArray[np.bool_]) -> NDArray[np.int32]:
    """``labels`` as int32; renumbered 1..N (0 stays background) if an id does not fit.

    A person may load or paint ids up to 2**64 - 1; cast as they are, such ids
    would wrap around and distinct objects could merge.
    """
    labels = np.asarray(labels)
    info = np.iinfo(np.int32)
    if labels.size == 0 or (labels.min() >= 0 and labels.max() <= info.max):
        return labels.astype(np.int32)
    ids, inverse = np.unique(labels, return_inverse=True)
    numbers = np.where(ids == 0, 0, np.cumsum(ids != 0)).astype(np.int32)
    return numbers[inverse].reshape(labels.shape)


def widen_for(layer: napari.layers.Labels, max_label: int) -> None:
    """Give ``layer`` int32 data if its dtype cannot hold ``max_label`` (assignments would wrap)."""
    dtype = np.dtype(layer.data.dtype)
    if dtype.kind not in "iu" or max_label > np.iinfo(dtype).max:
        layer.data = np.asarray(layer.data).astype(np.int32)


def replace_labels(
    layer: napari.layers.Labels,
    selectors: Sequence[tuple[int | slice, ...]],
    values: Sequence[NDArray[np.integer[Any]]],
) -> None:
    """Write ``values`` into ``layer`` at ``selectors``, as one step that Ctrl+Z undoes.

    Only the pixels that change are written, through the layer's own
    ``data_setitem`` (which records them for undo and emits ``paint``: wrap
    the call in :meth:`EditTracker.paused` so they are not taken for a
    person's edits).  More than :data:`UNDO_PIXELS` changed pixels are
    written directly, without undo.

    Parameters
    ----------
    layer : napari.layers.Labels
    selectors : sequence of tuple
        Each an index of ints and full slices (see :func:`labels_plane_selector`).
    values : sequence of ndarray of int
        What goes at each selector, shaped as ``layer.data[selector]``.

    """
    changes = []
    for selector, value in zip(selectors, values, strict=True):
        where = np.nonzero(np.asarray(layer.data[selector]) != value)
        if where[0].size:
            changes.append((selector, where, np.asarray(value)[where]))
    changed = sum(where[0].size for _, where, _ in changes)
    if not changed:
        return
    if changed > UNDO_PIXELS:
        for selector, value in zip(selectors, values, strict=True):
            layer.data[selector] = value
        layer.refresh()
        return
    indices: list[list[NDArray[np.intp]]] = [[] for _ in range(layer.data.ndim)]
    for selector, where, _ in changes:
        spatial = iter(where)
        for dim, part in enumerate(selector):
            n = where[0].size
            stacked = isinstance(part, (int, np.integer))
            indices[dim].append(np.full(n, part, np.intp) if stacked else next(spatial))
    layer.data_setitem(
        tuple(np.concatenate(parts) for parts in indices), np.concatenate([new for _, _, new in changes])
    )


class EditTracker:
    """Records which pixels of a Labels layer a person edited, from the layer's ``paint`` events.

    napari emits ``paint`` once per brush stroke, fill or erase (and for
    ``data_setitem``), with the changed region; writes by this plugin
    (``layer.data[...] = ...``) emit nothing and so are never taken for edits.

    Parameters
    ----------
    layer : napari.layers.Labels
    axes : str
        Axes of the image (the layer has the same without ``C``).
    on_edit : callable
        Called with the set of stack positions (planes) that were just edited.

    """

    def __init__(self, layer: napari.layers.Labels, axes: str, on_edit: Callable[[set[Plane]], None]) -> None:
        self.layer = layer
        self.axes = output_axes(axes)
        self.edited = np.zeros(layer.data.shape, bool)
        self._stack_dims = tuple(i for i, a in enumerate(self.axes) if a in stack_axes(self.axes))
        self._on_edit = on_edit
        self._paused = False
        layer.events.paint.connect(self._on_paint)

    def disconnect(self) -> None:
        """Stop listening to the layer."""
        self.layer.events.paint.disconnect(self._on_paint)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Within, changes to the layer are not edits (the plugin writes through ``data_setitem``)."""
        self._paused = True
        try:
            yield
        finally:
            self._paused = False

    def _on_paint(self, event: Any) -> None:
        if self._paused:
            return
        touched = np.zeros(self.edited.shape, bool)
        for atom in event.value:
            if hasattr(atom, "slice_key"):  # mask-based edit: paint, fill, polygon
                region = touched[atom.slice_key]
                touched[atom.slice_key] = True if atom.mask is None else region | atom.mask
            else:  # (indices, old values, new values) from data_setitem
                touched[tuple(np.asarray(i) for i in atom[0])] = True
        if not touched.any():
            return
        self.edited |= touched
        self._on_edit(self._planes_of(touched))

    def _planes_of(self, mask: NDArray[np.bool_]) -> set[Plane]:
        if not self._stack_dims:
            return {()} if mask.any() else set()
        spatial = tuple(i for i in range(mask.ndim) if i not in self._stack_dims)
        return {tuple(int(i) for i in index) for index in np.argwhere(mask.any(axis=spatial))}

    def plane(self, plane: Plane) -> NDArray[np.bool_]:
        """Edited pixels of one plane, shape (Y, X) (a view)."""
        return self.edited[plane_selector(self.axes, plane)]

    def edited_planes(self) -> set[Plane]:
        """Planes with at least one edited pixel."""
        return self._planes_of(self.edited)
