"""The dock widget: pick an image and a model, Segment, correct, Fine-tune.

Controls become core configs, long jobs run in workers (:mod:`.workers`),
results land in layers (:mod:`.layers`); corrections are recorded and saved by
:mod:`.recorder`, fine-tuning is :mod:`.finetune`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    LineEdit,
    ProgressBar,
    PushButton,
    RadioButtons,
)
from napari.qt.threading import FunctionWorker, GeneratorWorker
from napari.utils.notifications import show_error
from numpy.typing import NDArray
from qtpy.QtWidgets import QMessageBox

from napari_unet.core.models.store import ModelVersion
from napari_unet.core.progress import Progress
from napari_unet.core.segmentation.axes import normalise_axes, stack_axes
from napari_unet.core.training.corrections import CorrectionSet, CorrectionStore, default_corrections_dir
from napari_unet.gui.corrections_panel import CorrectionsPanel
from napari_unet.gui.finetune import FineTunePanel
from napari_unet.gui.inference_controls import AugmentBox, DiameterBox
from napari_unet.gui.layers import (
    Plane,
    current_plane,
    ensure_labels_layer,
    image_data,
    labels_name,
    labels_plane_selector,
    layer_axes,
    replace_labels,
    widen_for,
)
from napari_unet.gui.layout import Section, TextLine, scrolling
from napari_unet.gui.model_panel import ModelPanel
from napari_unet.gui.postprocess_panel import PostprocessPanel
from napari_unet.gui.progress_bar import JobProgress
from napari_unet.gui.recorder import CorrectionRecorder
from napari_unet.gui.workers import ModelCache, SegmentRequest, preload_worker, segment_worker, start_loading

if TYPE_CHECKING:  # importing the segmenter imports torch: the dock opens without it
    from napari_unet.core.models.files import ModelBundle
    from napari_unet.core.segmentation.segmenter import Segmentation, Segmenter

CURRENT_PLANE, WHOLE_STACK = "current plane", "whole stack"


def _ask_yes_no(question: str) -> bool:
    answer = QMessageBox.question(None, "napari-unet", question)
    return answer == QMessageBox.StandardButton.Yes


class SegmentWidget(Container):
    """Segment the chosen image with a U-Net, record corrections, fine-tune in the background.

    Parameters
    ----------
    viewer : napari.viewer.Viewer

    Attributes
    ----------
    confirm : callable
        Asks a yes/no question (a dialog by default; tests replace it).
    segment_worker : GeneratorWorker or None
        The running segmentation, if any.
    loading : FunctionWorker or None
        Loading torch and the chosen model in the background (see :meth:`load_model`), if it runs.

    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        # napari hands plugins a proxy that wraps every layer anew; the real viewer keeps
        # layer identity, which this widget relies on to match results to layers
        self._viewer: napari.viewer.Viewer = getattr(viewer, "__wrapped__", viewer)
        self.confirm: Callable[[str], bool] = _ask_yes_no
        self.segment_worker: GeneratorWorker | None = None
        self._segmenting: napari.layers.Image | None = None  # the image the running worker reads
        self._stop_reason = ""
        self._resegment_when_done = False
        self._closed = False
        self.loading: FunctionWorker | None = None
        self._torch_loaded = False
        self._loading_message = ""
        self._models = ModelCache()
        self._corrections = CorrectionSet(CorrectionStore(default_corrections_dir()))
        self.recorder = CorrectionRecorder(
            self._corrections, parent=self.native, on_written=self._alive(self._on_corrections_written)
        )

        self._image = ComboBox(label="Image", choices=self._image_choices, nullable=True)
        self._axes = LineEdit(label="Axes", tooltip="e.g. YX, CYX, YXC (RGB), ZYX, TYX, TZYX")
        self._axes_info = TextLine()
        self._scope = RadioButtons(
            label="Segment",
            choices=[CURRENT_PLANE, WHOLE_STACK],
            value=CURRENT_PLANE,
            orientation="horizontal",
        )
        self._stitch = CheckBox(text="Join objects across planes (3-D)", value=False)
        self._diameter = DiameterBox(
            "Typical object diameter in pixels, as Cellpose's diameter. 0 (auto) estimates it from "
            "the image; the size used is shown after Segment."
        )
        self._augment = AugmentBox()
        self.model = ModelPanel(self._models, self._set_status, on_previous=self._on_previous_version)
        self._segment = PushButton(text="Segment")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._progress = JobProgress(ProgressBar(value=0, min=0, max=1000, visible=False))
        self._status = TextLine()
        self.postprocess = PostprocessPanel(self._viewer, self._show_labels, self._set_status)
        self.corrections = CorrectionsPanel(
            self._viewer, self.recorder, self._shown_plane, self._set_status, self.postprocess.shown_plane
        )
        self.finetune = FineTunePanel(
            self._models,
            self._corrections,
            model_path=lambda: self.model.path,
            device=lambda: str(self.model.device.value),
            before_start=self._before_finetune,
            on_saved=self._on_version_saved,
        )
        image_panel = Container(
            widgets=[
                self._image,
                self._axes,
                self._axes_info,
                self._scope,
                self._stitch,
                self._diameter,
                self._augment,
            ],
            labels=True,
        )
        image_panel.margins = (0, 0, 0, 0)
        run_buttons = Container(widgets=[self._segment, self._cancel], layout="horizontal", labels=False)
        run_buttons.margins = (0, 0, 0, 0)
        # a first-time person needs image, model, Segment and the corrections; the rest unfolds
        self.sections = {
            "Post-processing": Section(
                "Post-processing",
                self.postprocess,
                expanded=False,
                tooltip="Thresholds and sizes that turn the network's output into objects (instant, no network)",
            ),
            "Corrections": Section(
                "Corrections", self.corrections, expanded=True, tooltip="Where your edits are saved"
            ),
            "Fine-tune": Section(
                "Fine-tune",
                self.finetune,
                expanded=False,
                tooltip="Train the model on your corrections, in the background",
            ),
        }
        body = Container(
            widgets=[
                image_panel,
                self.model,
                run_buttons,
                self._progress.bar,
                self._status,
                *self.sections.values(),
            ],
            labels=False,
        )
        body.margins = (6, 6, 6, 6)
        self.margins = (0, 0, 0, 0)
        self.native.layout().addWidget(scrolling(body))
        self._image.changed.connect(self._on_image_changed)
        self._axes.changed.connect(self._on_axes_changed)
        self.model.model.changed.connect(self._on_model_changed)
        self._segment.changed.connect(self._on_segment_clicked)
        self._cancel.changed.connect(self._on_cancel_clicked)
        # a lambda holds the widget: a bound method would be a weak reference, gone by then
        self.native.destroyed.connect(lambda *_: self._on_destroyed())
        self._viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self._viewer.layers.events.removed.connect(self._on_layers_changed)
        self._viewer.layers.events.reordered.connect(self._on_layers_changed)

        # an image opened before the widget: napari fills the choices only on later layer events
        with self._image.changed.blocked():
            self._image.reset_choices()
            self._image.value = self._first_image()
        self._on_image_changed(self._image.value)
        # torch and the model load in the background: the dock shows at once
        self.load_model()

    # -- choices ----------------------------------------------------------------------------
    def _image_choices(self, _: Any = None) -> list[tuple[str, napari.layers.Image]]:
        return [
            (layer.name, layer) for layer in self._viewer.layers if isinstance(layer, napari.layers.Image)
        ]

    def _first_image(self) -> napari.layers.Image | None:
        """The image to start with: the selected layer if it is an image, else the top image."""
        active = self._viewer.layers.selection.active
        if isinstance(active, napari.layers.Image):
            return active
        images = [layer for _, layer in self._image_choices()]
        return images[-1] if images else None

    def select_model(self, path: str | Path) -> None:
        """Select a model file (added to the choices if it is not listed)."""
        self.model.select(path)

    def _on_layer_inserted(self, event: Any) -> None:
        self._image.reset_choices()
        if isinstance(event.value, napari.layers.Image):
            self._image.value = event.value

    def _on_layers_changed(self, _: Any = None) -> None:
        self._image.reset_choices()
        if self._image.value is None:  # the chosen image was closed: follow another one
            self._image.value = self._first_image()
        if self.segment_worker is not None and self._segmenting not in self._viewer.layers:
            self._stop_reason = "the image layer was removed"
            self.segment_worker.quit()

    def _on_destroyed(self) -> None:
        """The window (or this dock widget) closed: stop jobs; results may no longer touch widgets."""
        self._closed = True
        for event, callback in (
            (self._viewer.layers.events.inserted, self._on_layer_inserted),
            (self._viewer.layers.events.removed, self._on_layers_changed),
            (self._viewer.layers.events.reordered, self._on_layers_changed),
        ):
            event.disconnect(callback)
        if self.segment_worker is not None:
            self.segment_worker.quit()
        self.finetune.shut_down()
        self.recorder.flush(wait=True)  # edits of the last ~0.3 s

    def _alive(self, callback: Callable[..., None]) -> Callable[..., None]:
        """``callback`` for a worker signal: ignored once the widget is gone (its Qt parts are deleted)."""

        def call(*args: Any) -> None:
            if not self._closed:
                callback(*args)

        return call

    # -- image and axes -------------------------------------------------------------------
    def _set_status(self, text: str) -> None:
        self._status.value = text
        self._status.tooltip = text

    def _on_image_changed(self, layer: napari.layers.Image | None) -> None:
        self.postprocess.forget()
        self.finetune.forget()
        if layer is None:
            self._axes.value, self._axes_info.value = "", "Open an image"
            self.recorder.set_image(None, "")
            self.corrections.refresh()
            return
        axes = layer_axes(layer)
        with self._axes.changed.blocked():
            self._axes.value = axes
        self._axes_info.value = f"detected {axes}, shape {tuple(image_data(layer).shape)}"
        self._on_axes_changed(axes)

    def _on_axes_changed(self, _: str = "") -> None:
        axes = self._checked_axes()
        layer = self._image.value
        has_stack = bool(axes and stack_axes(axes))
        self._scope.enabled = self._stitch.enabled = has_stack
        if layer is None or axes is None:
            return
        self.recorder.set_image(layer, axes)
        name = labels_name(layer)
        if name in self._viewer.layers and isinstance(self._viewer.layers[name], napari.layers.Labels):
            if self._viewer.layers[name].data.ndim == len(axes.replace("C", "")):
                self.recorder.attach(self._viewer.layers[name])
        if self.corrections.refresh():
            self._set_status(
                f"Corrections of this image were saved earlier (in {self.recorder.store.folder}): "
                "'Restore saved corrections' puts them back."
            )

    def _checked_axes(self) -> str | None:
        layer = self._image.value
        if layer is None:
            return None
        try:
            return normalise_axes(str(self._axes.value).strip(), tuple(image_data(layer).shape))
        except ValueError as error:
            self._set_status(f"Axes of '{layer.name}': {error}")
            return None

    def _on_corrections_written(self) -> None:
        error, self.recorder.write_error = self.recorder.write_error, None
        if error is not None:
            self._set_status(f"Corrections could not be saved in {self.recorder.store.folder}: {error}")
        if self.corrections.refresh():
            self.sections["Fine-tune"].unfold_unless_chosen()  # corrections to train on: the next step

    def _shown_plane(self) -> Plane | None:
        layer, axes = self._image.value, self._checked_axes()
        if layer is None or axes is None:
            return None
        return current_plane(self._viewer, layer, axes)

    def _show_labels(
        self,
        layer: napari.layers.Image,
        labels_layer: napari.layers.Labels,
        axes: str,
        planes: list[Plane],
        labels: list[NDArray[np.int32]],
    ) -> int:
        """Write new labels of ``planes`` (one undo step), keeping what the person drew.

        Returns
        -------
        int
            Corrected planes among ``planes`` (their corrections were kept).

        """
        corrected = 0
        if layer is self.recorder.image_layer:
            self.recorder.attach(labels_layer)
            # the new prediction shows only outside what the person corrected
            labels = self.recorder.keep_corrections(planes, labels)
            corrected = len(self.recorder.corrected_planes() & set(planes))
        widen_for(labels_layer, max(int(np.max(plane, initial=0)) for plane in labels))
        with self.recorder.paused():
            replace_labels(labels_layer, [labels_plane_selector(axes, p) for p in planes], labels)
        return corrected

    # -- model and device -----------------------------------------------------------------
    def _on_model_changed(self, _: Any = None) -> None:
        if self.model.path != self.finetune.trained_path:  # not the version it just saved
            self.finetune.forget()
        self.load_model()

    def load_model(self) -> FunctionWorker:
        """Load the chosen model (and, the first time, torch) in the background.

        The post-processing controls are disabled until they show the model's
        own settings.  Loading now also spares the first Segment the wait; a
        file that does not load is reported when Segment is pressed.
        """
        path = self.model.path
        name = Path(path).stem if path else "the model"
        self.postprocess.use_model_defaults(None)
        self.postprocess.enabled = False
        message = (
            f"Loading {name}…"
            if self._torch_loaded
            else f"Loading PyTorch and {name} in the background (a few seconds)…"
        )
        if not self._status.value or self._status.value == self._loading_message:
            self._set_status(message)
        self._loading_message = message
        self.loading = worker = preload_worker(self._models, path)
        worker.returned.connect(self._alive(lambda bundle: self._on_model_loaded(path, bundle)))
        worker.finished.connect(self._alive(lambda: self._on_loading_finished(worker)))
        start_loading(worker)  # a close meanwhile neither waits for it nor is touched by it
        return worker

    def _on_model_loaded(self, path: str | None, bundle: ModelBundle | None) -> None:
        if not self._torch_loaded:
            self._torch_loaded = True
            self.model.refresh_devices()
        if path != self.model.path:
            return  # another model was chosen meanwhile; its own load follows
        self.postprocess.use_model_defaults(bundle.postprocess if bundle is not None else None)

    def _on_loading_finished(self, worker: FunctionWorker) -> None:
        if worker is not self.loading:
            return
        self.loading = None
        self.postprocess.enabled = True
        if self._status.value == self._loading_message:
            self._set_status(f"{Path(self.model.path).stem} is loaded." if self.model.path else "")

    # -- segment --------------------------------------------------------------------------
    def _on_segment_clicked(self) -> None:
        self.segment()

    def segment(self, ask: bool = True) -> GeneratorWorker | None:
        """Segment the current plane or the whole stack in a worker (what the button does).

        Parameters
        ----------
        ask : bool
            Ask before replacing corrected planes (corrections stay saved either way).

        Returns
        -------
        GeneratorWorker or None
            The started worker, or ``None`` if nothing was started.

        """
        layer, axes, model_path = self._image.value, self._checked_axes(), self.model.path
        if self.segment_worker is not None:
            return None
        if layer is None or model_path is None:
            self._set_status("Choose an image and a model first.")
            return None
        if axes is None:  # the status line says what is wrong with them
            return None
        planes: list[Plane] | None = None
        if stack_axes(axes) and self._scope.value == CURRENT_PLANE:
            planes = [current_plane(self._viewer, layer, axes)]
        edited = self.recorder.edited_planes()
        replaced = edited if planes is None else edited & set(planes)
        if replaced and ask:
            question = (
                f"Segment {len(replaced)} corrected plane(s) of '{labels_name(layer)}' again? "
                "What you drew stays as it is; the labels around it are replaced."
            )
            if not self.confirm(question):
                return None
        self.recorder.flush()
        stitch = bool(self._stitch.value and self._stitch.enabled)
        request = SegmentRequest(
            model_path,
            image_data(layer),
            axes,
            planes,
            stitch,
            str(self.model.device.value),
            self.postprocess.config(),
            diameter=self._diameter.diameter,
            augment=bool(self._augment.value),
        )
        # the result layer appears at the click (creating a layer costs napari ~0.2 s, better
        # spent now than as a stall when the result arrives); a cancelled run removes it again
        created = labels_name(layer) not in self._viewer.layers
        labels_layer = ensure_labels_layer(self._viewer, layer, axes)
        worker = segment_worker(request, self._models)
        alive = self._alive
        worker.yielded.connect(alive(self._on_segment_progress))
        worker.returned.connect(
            alive(lambda result: self._on_segmented(layer, labels_layer, created, request, *result))
        )
        worker.aborted.connect(alive(lambda: self._on_segment_stopped(labels_layer, created, "Cancelled")))
        worker.errored.connect(alive(lambda error: self._on_segment_error(layer, error)))
        worker.errored.connect(alive(lambda _: self._on_segment_stopped(labels_layer, created, "Failed")))
        worker.finished.connect(alive(self._on_segment_finished))
        self.segment_worker, self._segmenting, self._stop_reason = worker, layer, ""
        self._progress.start(f"Segmenting {layer.name}", 1000)
        self._segment.enabled, self._cancel.enabled = False, True
        self._set_status(f"Segmenting {layer.name}…")
        worker.start()
        return worker

    def _on_segment_progress(self, record: Progress) -> None:
        if self.segment_worker is None or self.segment_worker.abort_requested:
            return  # a record yielded before the worker saw the Cancel
        self._status.value = record.message
        # last: napari's activity bar processes events, so the job's end may be handled inside
        self._progress.update(record)

    def _on_cancel_clicked(self) -> None:
        if self.segment_worker is not None:
            self.segment_worker.quit()

    def _on_segment_stopped(self, labels_layer: napari.layers.Labels, created: bool, what: str) -> None:
        if created and labels_layer in self._viewer.layers:
            self._viewer.layers.remove(labels_layer)
        if what == "Cancelled":
            reason = f" ({self._stop_reason})" if self._stop_reason else ""
            self._set_status(f"Cancelled{reason}: the labels are unchanged.")

    def _on_segment_error(self, layer: napari.layers.Image, error: Exception) -> None:
        message = f"Segmenting '{layer.name}' failed: {error}"
        self._set_status(message)
        show_error(message)

    def _on_segment_finished(self) -> None:
        self.segment_worker = self._segmenting = None
        self._progress.close()
        self._segment.enabled, self._cancel.enabled = True, False
        if self._resegment_when_done:
            self._resegment_when_done = False
            if self._image.value is not None:
                self.segment(ask=False)

    def _on_segmented(
        self,
        layer: napari.layers.Image,
        labels_layer: napari.layers.Labels,
        created: bool,
        request: SegmentRequest,
        segmenter: Segmenter,
        result: Segmentation,
    ) -> None:
        if layer not in self._viewer.layers or image_data(layer) is not request.image:
            self._stop_reason = (
                "the image layer was removed"
                if layer not in self._viewer.layers
                else f"the data of '{layer.name}' changed; Segment again"
            )
            self._on_segment_stopped(labels_layer, created, "Cancelled")
            return
        if labels_layer not in self._viewer.layers:  # removed while segmenting
            labels_layer = ensure_labels_layer(self._viewer, layer, request.axes)
        planes = sorted(result.outputs) if request.planes is None else request.planes
        if layer is self.recorder.image_layer:
            self.recorder.attach(labels_layer)
            self.recorder.segmented(set(planes))  # saves edits made meanwhile first
        new_labels = [result.labels[labels_plane_selector(request.axes, plane)] for plane in planes]
        corrected = self._show_labels(layer, labels_layer, request.axes, planes, new_labels)
        kept = f" Your corrections on {corrected} plane(s) are kept as you drew them." if corrected else ""
        self.postprocess.remember(layer, request.model_path, request.stitch, segmenter, result)
        self.model.device_used.value = f"ran on {result.device}"
        diameter = f", objects ~{result.diameter:.0f} px" if result.diameter else ""
        model = Path(request.model_path).stem
        notices = "".join(f" {notice}" for notice in result.notices)  # e.g. a blank image
        self._set_status(
            f"Segmented {layer.name}: {int(result.labels.max())} objects{diameter}, with {model}.{kept}{notices}"
        )

    # -- fine-tune results ----------------------------------------------------------------
    def _before_finetune(self) -> None:
        self.recorder.flush(wait=True)

    def _on_version_saved(self, version: ModelVersion, select: bool) -> None:
        if not select:  # not better than the model in use: listed, not chosen
            self.model.model.reset_choices()
            return
        self.select_model(version.path)
        self._resegment()

    def _on_previous_version(self) -> None:
        self._resegment()

    def _resegment(self) -> None:
        """Show the selected model's labels where the image was segmented (corrections stay)."""
        layer = self._image.value
        if layer is None or labels_name(layer) not in self._viewer.layers:
            return
        if self.segment_worker is not None:
            self._resegment_when_done = True
        else:
            self.segment(ask=False)
