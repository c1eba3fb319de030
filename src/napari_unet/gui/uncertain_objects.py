"""The "Next uncertain object" button: the view jumps to the shown plane's likeliest mistakes, in turn.

The first click ranks the plane's objects in a worker (the network on the
plane and its mirror images, see :mod:`napari_unet.core.segmentation.uncertainty`);
each click then centres the view on the next object of that list, selects its
label for the Labels tools, and says how uncertain it is and why.  A new
segmentation, other post-processing settings or another plane rank afresh;
objects the person has corrected are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import napari
import numpy as np
from magicgui.widgets import Container, PushButton
from napari.qt.threading import GeneratorWorker
from numpy.typing import NDArray

from napari_unet.core.progress import Progress
from napari_unet.core.segmentation.axes import read_plane
from napari_unet.core.segmentation.uncertainty import UncertainObject, rank_plane
from napari_unet.gui.layers import Plane, image_data, labels_name, labels_plane_selector
from napari_unet.gui.layout import TextLine
from napari_unet.gui.postprocess_panel import SegmentedPlane
from napari_unet.gui.workers import job_worker

BUTTON_TEXT = "Next uncertain object"

_REASONS = {
    "flips": "the mirrored image gives another outline",
    "centre": "no clear centre",
    "outline": "no clear edge",
    "foreground": "faint",
}


def _ranking_job(
    target: SegmentedPlane, labels: NDArray[np.integer[Any]], skip: NDArray[np.bool_] | None
) -> Generator[Progress, None, list[UncertainObject]]:
    """Read the plane (in the worker: a lazy image reads here) and rank its objects."""
    plane = read_plane(image_data(target.image_layer), target.axes, target.plane)
    ranking = rank_plane(target.segmenter, plane, labels, target.outputs.scale, target.config, skip)
    return (yield from ranking)


def _same(ranked: SegmentedPlane | None, target: SegmentedPlane) -> bool:
    """Whether a ranking made for ``ranked`` holds for ``target``: same plane, outputs and settings."""
    return (
        ranked is not None
        and ranked.image_layer is target.image_layer
        and ranked.plane == target.plane
        and ranked.outputs is target.outputs
        and ranked.config == target.config
    )


def camera(viewer: napari.viewer.Viewer) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` from napari 0.9 on, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def describe(item: UncertainObject, rank: int, count: int) -> str:
    """``object 12: uncertainty 0.43 (3 of 41 on this plane; no clear edge)``."""
    reason = _REASONS[max(item.terms, key=item.terms.__getitem__)] if item.terms else ""
    return (
        f"object {item.label}: uncertainty {item.score:.2f} ({rank} of {count} on this plane"
        f"{'; ' + reason if reason else ''})"
    )


class UncertainObjects(Container):
    """The "Next uncertain object" button and a line saying which object it shows.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    segmented : callable
        The shown plane of the segmented image with its network outputs, or
        ``None`` when it was not segmented.
    corrected : callable
        Pixels of a plane the person corrected (``None`` if none): objects
        there are left out.

    Attributes
    ----------
    worker : GeneratorWorker or None
        The ranking running, if any.

    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        segmented: Callable[[], SegmentedPlane | None],
        corrected: Callable[[Plane], NDArray[np.bool_] | None],
    ) -> None:
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._segmented = segmented
        self._corrected = corrected
        self._button = PushButton(
            text=BUTTON_TEXT,
            tooltip=(
                "Show the objects of this plane most likely wrong, one per click: the network is run "
                "on the plane and its mirror images, and an object drawn differently in them, without "
                "a clear centre or edge, or faint, comes first. The object's label is selected."
            ),
        )
        self._info = TextLine()
        self.extend([self._button, self._info])
        self.worker: GeneratorWorker | None = None
        self._ranked: SegmentedPlane | None = None  # what the ranking was made for
        self._ranking: list[UncertainObject] = []
        self._position = -1
        self._closed = False
        self._button.changed.connect(self._on_clicked)
        self.native.destroyed.connect(lambda *_: self._on_destroyed())

    @property
    def text(self) -> str:
        """What the line under the button says."""
        return str(self._info.value)

    def _on_destroyed(self) -> None:
        self._closed = True
        if self.worker is not None:
            self.worker.quit()

    def _on_clicked(self) -> None:
        target = self._segmented()
        if target is None:
            self._info.value = "Segment this plane first: its objects are ranked by how sure the model is."
            return
        if not _same(self._ranked, target):
            self._rank(target)
        else:
            self.show_next()

    def _labels_layer(self, target: SegmentedPlane) -> napari.layers.Labels | None:
        name = labels_name(target.image_layer)
        layer = self._viewer.layers[name] if name in self._viewer.layers else None
        return layer if isinstance(layer, napari.layers.Labels) else None

    def _rank(self, target: SegmentedPlane) -> None:
        labels_layer = self._labels_layer(target)
        if labels_layer is None:
            self._info.value = f"'{labels_name(target.image_layer)}' is gone: segment again."
            return
        labels = np.array(labels_layer.data[labels_plane_selector(target.axes, target.plane)])
        self.worker = worker = job_worker(_ranking_job(target, labels, self._corrected(target.plane)))
        worker.yielded.connect(self._alive(self._on_progress))
        worker.returned.connect(self._alive(lambda ranking: self._on_ranked(target, ranking)))
        worker.errored.connect(self._alive(self._on_error))
        worker.finished.connect(self._alive(self._on_finished))
        self._button.enabled = False
        self._info.value = "Ranking the objects of this plane by uncertainty…"
        worker.start()

    def _alive(self, callback: Callable[..., None]) -> Callable[..., None]:
        def call(*args: Any) -> None:
            if not self._closed:
                callback(*args)

        return call

    def _on_progress(self, record: Progress) -> None:
        self._info.value = f"Ranking the objects of this plane: {record.message}"

    def _on_error(self, error: Exception) -> None:
        self._info.value = f"Ranking the objects failed: {error}"

    def _on_finished(self) -> None:
        self.worker = None
        self._button.enabled = True

    def _on_ranked(self, target: SegmentedPlane, ranking: list[UncertainObject]) -> None:
        self._ranked, self._ranking, self._position = target, ranking, -1
        self.show_next()

    def show_next(self) -> UncertainObject | None:
        """Centre the view on the next object of the ranking that is still there; returns it.

        After the last object the list starts again from the most uncertain.
        """
        target = self._ranked
        labels_layer = self._labels_layer(target) if target is not None else None
        if target is None or labels_layer is None:
            return None
        shown = np.asarray(labels_layer.data[labels_plane_selector(target.axes, target.plane)])
        for _ in range(len(self._ranking)):
            self._position = (self._position + 1) % len(self._ranking)
            item = self._ranking[self._position]
            if (shown == item.label).any():  # not erased or redrawn since
                self._centre_on(labels_layer, target, item)
                self._info.value = describe(item, self._position + 1, len(self._ranking))
                return item
        self._info.value = "No object left to check on this plane (corrected ones are left out)."
        return None

    def _centre_on(
        self, labels_layer: napari.layers.Labels, target: SegmentedPlane, item: UncertainObject
    ) -> None:
        """Centre the camera on ``item``'s centroid and select its label in ``labels_layer``."""
        selector = labels_plane_selector(target.axes, target.plane)
        centroid = iter(item.centroid)
        point = [next(centroid) if isinstance(index, slice) else index for index in selector]
        world = list(self._viewer.dims.point)
        world[len(world) - labels_layer.ndim :] = labels_layer.data_to_world(point)
        camera(self._viewer).center = tuple(world[axis] for axis in self._viewer.dims.displayed)
        labels_layer.selected_label = item.label
        self._viewer.layers.selection.active = labels_layer


__all__ = ["BUTTON_TEXT", "UncertainObjects", "camera", "describe"]
