"""The Fine-tune part of the dock widget: train on the session's corrections in the background."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from magicgui.widgets import CheckBox, Container, ProgressBar, PushButton, SpinBox
from napari.qt.threading import FunctionWorker, GeneratorWorker
from napari.utils.notifications import show_error

from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.store import ModelVersion
from napari_unet.core.progress import Progress
from napari_unet.core.training.corrections import CorrectionSet
from napari_unet.core.training.finetune import FINE_TUNE_PRESET, FineTuneJob, fine_tune_config
from napari_unet.core.training.validation import describe, validation_of
from napari_unet.gui.layout import TextLine, bring_into_view
from napari_unet.gui.plot import LossPlot
from napari_unet.gui.progress_bar import JobProgress
from napari_unet.gui.workers import ModelCache, fine_tune_worker, save_worker

_READY = "Correct some labels, then Fine-tune."


class FineTunePanel(Container):
    """Fine-tune button, Stop / Stop and keep, progress and a live loss plot.

    Parameters
    ----------
    models : ModelCache
    corrections : CorrectionSet
        What to train on (read afresh by each training round).
    model_path : callable
        Returns the file of the model to start from (the one selected).
    device : callable
        Returns the device name chosen in the widget.
    before_start : callable
        Called before training starts (writes pending corrections).
    on_saved : callable
        Called with the new model version once saved, and whether to select
        it: only when it beats its parent on the held-out corrections (see
        :mod:`~napari_unet.core.training.validation`), was not scored, or the
        person asked for it with "Stop and keep".

    Attributes
    ----------
    training_options : dict
        Changes to :data:`~napari_unet.core.training.finetune.FINE_TUNE_PRESET`'s fields (tests
        use tiny ones).
    trained_path : str or None
        File of the version the last training saved (its loss is what the plot shows).

    """

    def __init__(
        self,
        models: ModelCache,
        corrections: CorrectionSet,
        model_path: Callable[[], str | None],
        device: Callable[[], str],
        before_start: Callable[[], None],
        on_saved: Callable[[ModelVersion, bool], None],
    ) -> None:
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)
        self._models = models
        self._corrections = corrections
        self._model_path = model_path
        self._device = device
        self._before_start = before_start
        self._on_saved = on_saved
        self.training_options: dict[str, Any] = {}
        self.worker: GeneratorWorker | FunctionWorker | None = None
        self._job: FineTuneJob | None = None
        self._keep = False
        self._saving: FunctionWorker | None = None
        self._closed = False  # the widget is gone: its Qt parts are deleted, only jobs remain
        self.trained_path: str | None = None

        self._steps = SpinBox(label="Steps", value=FINE_TUNE_PRESET.steps, min=1, max=100_000, step=10)
        self._continuous = CheckBox(text="Keep training while I correct", value=False)
        self._finetune = PushButton(
            text="Fine-tune",
            tooltip=(
                "Train on the corrected planes. One corrected object in five is set aside to score "
                "the result against the model you started from; a version that is not better is "
                "saved but not selected. Erased pixels teach nothing unless the plane is marked "
                "fully reviewed."
            ),
        )
        self._stop = PushButton(text="Stop", enabled=False, tooltip="Stop and discard the training")
        self._stop_keep = PushButton(
            text="Stop and keep", enabled=False, tooltip="Stop and save the weights trained so far"
        )
        self._progress = JobProgress(ProgressBar(label="Training", value=0, min=0, max=1, visible=False))
        self._status = TextLine(_READY)
        buttons = Container(widgets=[self._stop, self._stop_keep], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend(
            [self._steps, self._continuous, self._finetune, buttons, self._progress.bar, self._status]
        )
        self.loss_plot = LossPlot()
        self.native.layout().addWidget(self.loss_plot)

        self._finetune.changed.connect(self._on_finetune_clicked)
        self._stop.changed.connect(self._on_stop_clicked)
        self._stop_keep.changed.connect(self._on_stop_keep_clicked)

    @property
    def running(self) -> bool:
        """Whether a training worker is running."""
        return self.worker is not None

    def _set_status(self, text: str) -> None:
        self._status.value = text
        self._status.tooltip = text

    def _on_finetune_clicked(self) -> None:
        self.start()

    def start(self) -> GeneratorWorker | None:
        """Start fine-tuning the selected model on all corrections of the session."""
        if self.running:
            return None
        path = self._model_path()
        if path is None:
            self._set_status("Choose a model first.")
            return None
        self._before_start()
        continuous = bool(self._continuous.value)
        if not len(self._corrections) and not continuous:
            self._set_status("No corrections yet: edit the labels with napari's brush, eraser or fill.")
            return None
        try:
            parent = self._models.get(path)
        except ValueError as error:
            self._set_status(str(error))
            return None
        steps = int(self._steps.value)
        config = fine_tune_config(steps, self._device(), **self.training_options)
        self._job = FineTuneJob(parent, self._corrections, config, self._device(), continuous)
        self._keep = False
        self.worker = worker = fine_tune_worker(self._job)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.aborted.connect(self._on_aborted)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.loss_plot.clear()
        self._progress.start(f"Fine-tuning {parent.name}", steps)
        self._finetune.enabled = False
        self._stop.enabled = self._stop_keep.enabled = True
        self._set_status(f"Fine-tuning {parent.name} on {len(self._corrections)} corrected plane(s)…")
        worker.start()
        return worker

    def forget(self) -> None:
        """Clear the last training's status and loss plot (another image or model was chosen).

        A training that runs goes on showing its progress.
        """
        if self.running:
            return
        self.trained_path = None
        self.loss_plot.clear()
        self._set_status(_READY)

    def shut_down(self) -> None:
        """The widget is going: stop training (a "Stop and keep" save under way still completes)."""
        self._closed = True
        if self.worker is not None:
            self.worker.quit()

    def _on_progress(self, record: Progress) -> None:
        if self._closed:
            return
        if "loss" in record.metrics:
            self.loss_plot.append(record.metrics["loss"])
            self._set_status(f"{record.message}: loss {record.metrics['loss']:.3f}")
        elif record.message:
            self._set_status(record.message)
        # last: napari's activity bar processes events, so the job's end may be handled inside
        self._progress.update(record)

    def _on_stop_clicked(self) -> None:
        self.stop(keep=False)

    def _on_stop_keep_clicked(self) -> None:
        self.stop(keep=True)

    def stop(self, keep: bool) -> None:
        """Stop training; with ``keep``, save the weights trained so far as a new version."""
        if self.worker is None:
            return
        self._keep = keep
        self._stop.enabled = self._stop_keep.enabled = False
        self._set_status("Stopping…")
        self.worker.quit()

    def _on_returned(self, result: tuple[ModelBundle, ModelVersion]) -> None:
        bundle, version = result
        self._models.put(bundle)
        if self._closed:
            return
        record = validation_of(bundle)
        self.trained_path = str(version.path)
        if record is None:  # "Stop and keep" before any scoring
            self._set_status(f"Saved {version.name} ({version.path}); not scored on your corrections.")
            self._on_saved(version, True)
            return
        comparison = describe(record)
        if record["better"]:
            self._set_status(f"{comparison}. Saved {version.name} and selected it.")
            self._on_saved(version, True)
            return
        parent = bundle.provenance.get("parent", "the model")
        if self._keep:  # "Stop and keep": the person asked for these weights
            self._set_status(
                f"{comparison}. Not better than {parent} on your corrections; "
                f"{version.name} is saved and selected, as you asked."
            )
            self._on_saved(version, True)
            return
        self._set_status(
            f"{comparison}. Not better than {parent} on your corrections, so {parent} stays selected; "
            f"{version.name} is saved and can be chosen under Model."
        )
        self._on_saved(version, False)

    def _on_aborted(self) -> None:
        kept = self._job.kept_result() if self._keep and self._job is not None else None
        if kept is None:
            if not self._closed:
                self._set_status("Stopped: the model is unchanged.")
            return
        if not self._closed:
            self._set_status("Saving the weights trained so far…")
        # saved in a worker too; the panel counts as running until the version exists
        self._saving = worker = save_worker(kept)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)

    def _on_errored(self, error: Exception) -> None:
        if self._closed:
            return
        self._set_status(f"Fine-tuning failed: {error}")
        show_error(f"Fine-tuning failed: {error}")

    def _on_finished(self) -> None:
        if self._saving is not None:
            self.worker, self._saving = self._saving, None
            self.worker.start()
            return
        self.worker = None
        self._job = None
        if self._closed:
            return
        self._progress.close()
        self._finetune.enabled = True
        self._stop.enabled = self._stop_keep.enabled = False
        bring_into_view(self._status.native)  # the result, below the dock's fold on a small screen
