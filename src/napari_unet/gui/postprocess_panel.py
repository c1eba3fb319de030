"""Post-processing controls that re-label cached network outputs instantly (no network)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import napari
from magicgui.widgets import Container, FloatSlider, SpinBox
from qtpy.QtCore import QTimer

from napari_unet.core.config import PostprocessConfig
from napari_unet.core.segmentation.postprocess import PlaneOutputs, relabel
from napari_unet.gui.layers import Plane, current_plane, labels_name

if TYPE_CHECKING:  # the segmenter imports torch: the dock opens without it
    import numpy as np
    from numpy.typing import NDArray

    from napari_unet.core.segmentation.segmenter import Segmentation, Segmenter

RELABEL_DELAY_MS = 120
"""A slider drag re-labels once it pauses this long, not at every pixel of the drag."""


@dataclass
class _Cache:
    """Network outputs of the last segmentation of an image."""

    image_layer: napari.layers.Image
    model_path: str
    axes: str
    stitch: bool
    segmenter: Segmenter
    outputs: dict[Plane, PlaneOutputs]


@dataclass(frozen=True)
class SegmentedPlane:
    """A plane of the segmented image with the network outputs its labels came from.

    Attributes
    ----------
    image_layer : napari.layers.Image
    axes : str
        The image's axes, as segmented.
    plane : tuple of int
        Stack position (``()`` for a 2-D image).
    segmenter : Segmenter
        The model that segmented it.
    outputs : PlaneOutputs
    config : PostprocessConfig
        The settings its labels were made with.

    """

    image_layer: napari.layers.Image
    axes: str
    plane: Plane
    segmenter: Segmenter
    outputs: PlaneOutputs
    config: PostprocessConfig


class PostprocessPanel(Container):
    """Probability and seed thresholds, minimum object size, join threshold, object probability.

    Until the person moves a control, segmentation uses the model's own
    settings (and the controls then show them).

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    show_labels : callable
        Shows new labels: given the image layer, its result layer, the axes,
        the planes and their labels; keeps what the person corrected and
        returns the number of corrected planes among them.
    report : callable
        Shows a one-line status message.

    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        show_labels: Callable[
            [napari.layers.Image, napari.layers.Labels, str, list[Plane], list[NDArray[np.int32]]], int
        ],
        report: Callable[[str], None],
    ) -> None:
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._show_labels = show_labels
        self._report = report
        self._cache: _Cache | None = None
        self._defaults = PostprocessConfig()  # the chosen model's own settings, once known
        self._touched = False
        self._showing = False
        self._foreground = FloatSlider(
            label="Probability",
            min=0.05,
            max=0.95,
            step=0.05,
            value=0.5,
            tooltip="Pixels more likely than this to be inside an object are foreground.",
        )
        self._seed = FloatSlider(
            label="Seed threshold",
            min=0.05,
            max=0.95,
            step=0.05,
            value=0.5,
            tooltip="Lower joins objects cut in pieces; higher separates touching objects.",
        )
        self._min_size = SpinBox(
            label="Min size (px)",
            min=0,
            max=100_000,
            value=10,
            tooltip=(
                "Objects smaller than this (pixels at the model's scale) join the object "
                "they touch, or are removed if they touch none."
            ),
        )
        self._join = FloatSlider(
            label="Join threshold",
            min=0.05,
            max=1.0,
            step=0.05,
            value=1.0,
            tooltip=(
                "Touching objects are joined when the line between them runs this high on the "
                "distance map (fraction of its peak). 1 joins nothing; lower mends more objects "
                "cut in two, but may join touching ones."
            ),
        )
        self._object_probability = FloatSlider(
            label="Object probability",
            min=0.0,
            max=0.95,
            step=0.05,
            value=0.0,
            tooltip=(
                "Objects whose mean probability is under this are dropped (faint or doubtful "
                "detections). 0 keeps every object."
            ),
        )
        self._controls = (self._foreground, self._seed, self._min_size, self._join, self._object_probability)
        self.extend(self._controls)
        self._timer = QTimer(self.native)  # dies with the panel: no late re-label
        self._timer.setSingleShot(True)
        self._timer.setInterval(RELABEL_DELAY_MS)
        self._timer.timeout.connect(self.relabel)
        for control in self._controls:
            control.changed.connect(self._on_control_changed)

    def config(self) -> PostprocessConfig | None:
        """Settings to segment with: ``None`` (the model's own) until a control was moved.

        Then the model's own settings with the controls' values: what no control
        shows (``fill_background``) stays the model's.
        """
        if not self._touched:
            return None
        return replace(
            self._defaults,
            foreground_threshold=float(self._foreground.value),
            seed_threshold=float(self._seed.value),
            min_size=int(self._min_size.value),
            join_threshold=float(self._join.value),
            object_probability=float(self._object_probability.value),
        )

    def use_model_defaults(self, config: PostprocessConfig | None = None) -> None:
        """Forget the person's settings (another model was chosen) and show the model's, if given."""
        self._touched = False
        if config is not None:
            self._defaults = config
            self._show(config)

    def forget(self) -> None:
        """Drop cached outputs (another image was chosen)."""
        self._cache = None

    def remember(
        self,
        layer: napari.layers.Image,
        model_path: str,
        stitch: bool,
        segmenter: Segmenter,
        result: Segmentation,
    ) -> None:
        """Keep a segmentation's outputs (merged with earlier planes of the same image and model)."""
        cache = self._cache
        key = (layer, model_path, result.axes, stitch)
        outputs = dict(result.outputs)
        if cache is not None and (cache.image_layer, cache.model_path, cache.axes, cache.stitch) == key:
            outputs = {**cache.outputs, **outputs}
        self._cache = _Cache(layer, model_path, result.axes, stitch, segmenter, outputs)
        self._defaults = segmenter.bundle.postprocess
        self._show(segmenter.postprocess)

    def shown_plane(self) -> SegmentedPlane | None:
        """The plane the viewer shows of the segmented image, if it was segmented (else ``None``)."""
        cache = self._cache
        if cache is None or cache.image_layer not in self._viewer.layers:
            return None
        plane = current_plane(self._viewer, cache.image_layer, cache.axes)
        if plane not in cache.outputs:
            return None
        config = self.config() or cache.segmenter.postprocess
        return SegmentedPlane(
            cache.image_layer, cache.axes, plane, cache.segmenter, cache.outputs[plane], config
        )

    def _show(self, config: PostprocessConfig) -> None:
        self._showing = True
        try:
            self._foreground.value = config.foreground_threshold
            self._seed.value = config.seed_threshold
            self._min_size.value = config.min_size
            self._join.value = config.join_threshold
            self._object_probability.value = config.object_probability
        finally:
            self._showing = False

    def _on_control_changed(self, _: Any = None) -> None:
        if self._showing:
            return
        self._touched = True
        if self._cache is not None:
            self._timer.start()

    def relabel(self) -> None:
        """Labels from the cached outputs under the current settings; corrected planes are kept."""
        cache, config = self._cache, self.config()
        if cache is None or config is None:
            return
        name = labels_name(cache.image_layer)
        if name not in self._viewer.layers:
            return
        labels = relabel(cache.outputs, cache.segmenter.heads, cache.stitch, config)
        kept = self._show_labels(
            cache.image_layer, self._viewer.layers[name], cache.axes, list(labels), list(labels.values())
        )
        note = f" (what you drew on {kept} plane(s) is kept)" if kept else ""
        self._report(f"Post-processing updated{note}.")
