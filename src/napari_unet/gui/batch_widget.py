"""Batch widget: segment folders of TIFF files (or stacks) on disk, in the background.

The same job as ``napari-unet segment``: files stream plane by plane into
``<output>/<stem>.tif``, complete outputs are skipped (so a cancelled run
resumes), bad files are reported in the table and the rest go on.  With a
Dask scheduler address the files run on that cluster instead of here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import napari
import numpy as np
import tifffile
from magicgui.widgets import (
    CheckBox,
    Container,
    FileEdit,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
    Table,
)
from napari.qt.threading import FunctionWorker, GeneratorWorker
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QAbstractItemView, QHeaderView

from napari_unet.core.config import InferenceConfig
from napari_unet.core.io.files import InputError, find_inputs
from napari_unet.core.io.stacks import TiffImage
from napari_unet.core.progress import Progress
from napari_unet.gui.inference_controls import AugmentBox, DiameterBox
from napari_unet.gui.layout import Section, TextLine, scrolling
from napari_unet.gui.model_panel import ModelPanel
from napari_unet.gui.progress_bar import JobProgress
from napari_unet.gui.workers import ModelCache, job_worker, limit_torch_threads, preload_worker, start_loading

if TYPE_CHECKING:  # core.batch.local imports torch: the dock opens without it
    from napari_unet.core.batch.local import BatchProgress, BatchSettings, FileResult

COLUMNS = ("file", "objects", "seconds", "status", "message")


@dataclass(frozen=True)
class BatchRequest:
    """What a Run click asks for.

    Attributes
    ----------
    inputs : list of Path
    outdir : Path
    model_path : str
    device : str
    settings : BatchSettings
    scheduler : str
        Dask scheduler address or scheduler file; empty to run here.
    planes_per_task : int
        On a cluster, large stacks are split into tasks of this many planes.
    diameter : float, optional
        Object diameter in pixels for every file; estimated per file when ``None``.
    augment : bool
        Average the network outputs over flips (test-time augmentation).

    """

    inputs: list[Path]
    outdir: Path
    model_path: str
    device: str
    settings: BatchSettings
    scheduler: str = ""
    planes_per_task: int = 8
    diameter: float | None = None
    augment: bool = False


def batch_job(request: BatchRequest, models: ModelCache) -> Generator[BatchProgress, None, list[FileResult]]:
    """Load the model, then :func:`~napari_unet.core.batch.runner.segment_batch` the request's files."""
    from napari_unet.core.batch.local import BatchProgress
    from napari_unet.core.batch.runner import segment_batch

    yield BatchProgress(0, len(request.inputs), "loading the model", {"file": 0.0})
    bundle = models.get(request.model_path)
    inference = InferenceConfig(device=request.device, diameter=request.diameter, augment=request.augment)
    return (
        yield from segment_batch(
            request.inputs,
            request.outdir,
            bundle,
            request.model_path,
            inference,
            settings=request.settings,
            scheduler=request.scheduler,
            planes_per_task=request.planes_per_task,
        )
    )


class BatchWidget(Container):
    """Segment files or a folder of TIFFs into label files, with a results table.

    Parameters
    ----------
    viewer : napari.viewer.Viewer

    Attributes
    ----------
    worker : GeneratorWorker or None
        The running batch, if any.
    loading : FunctionWorker or None
        Loading torch and the chosen model in the background, while it runs.
    results : dict
        Input path -> :class:`~napari_unet.core.batch.local.FileResult` of this run so far.

    """

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer: napari.viewer.Viewer = getattr(viewer, "__wrapped__", viewer)
        self._models = ModelCache()
        self.worker: GeneratorWorker | None = None
        self.results: dict[Path, FileResult] = {}
        self._rows: dict[Path, int] = {}
        self._stopped = ""

        self._files = FileEdit(label="Files", mode="rm", nullable=True, filter="*.tif *.tiff")
        self._folder = FileEdit(label="Folder", mode="d", nullable=True)
        self._pattern = LineEdit(label="Pattern", value="*", tooltip="files of the folder, e.g. *_dapi.tif")
        self._output = FileEdit(
            label="Output", mode="d", nullable=True, tooltip="folder for <input stem>.tif labels"
        )
        self._axes = LineEdit(
            label="Axes", tooltip="empty: each file's own (ImageJ/OME) or a guess; e.g. ZYX"
        )
        self._stitch = CheckBox(text="Join objects across planes (3-D)", value=False)
        self._diameter = DiameterBox(
            "typical object diameter in pixels for every file; auto (0) estimates it per file"
        )
        self._augment = AugmentBox()
        self._overwrite = CheckBox(text="Redo outputs that exist", value=False)
        self._scheduler = LineEdit(
            label="Dask cluster",
            tooltip="empty: this computer; else tcp://host:8786 or a scheduler file "
            "(inputs, output and model at the same paths on the workers)",
        )
        self._planes_per_task = SpinBox(
            label="Planes per task",
            value=8,
            min=0,
            max=10_000,
            visible=False,
            tooltip="on a cluster, stacks are split into tasks of this many planes (0: whole files)",
        )
        self._scheduler.changed.connect(
            lambda value: setattr(self._planes_per_task, "visible", bool(str(value).strip()))
        )
        self.model = ModelPanel(self._models, self._set_status)
        self._run = PushButton(text="Run")
        self._cancel = PushButton(text="Cancel", enabled=False)
        self._overall = JobProgress(ProgressBar(value=0, min=0, max=1000, visible=False, label="All files"))
        self._file_bar = ProgressBar(value=0, min=0, max=100, visible=False, label="This file")
        self._status = TextLine()
        self.table = Table(value=([], [], list(COLUMNS)))
        self.table.native.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)  # results, not input
        self.table.native.setMinimumHeight(160)
        self._fit_columns()
        self.table.native.setWordWrap(False)
        self.table.native.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.native.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        # the selected file's whole message (an error can be longer than its cell)
        self._details = TextLine()
        self._open = PushButton(text="Open selected result")

        # filled after construction: magicgui aligns the labels of widgets added later only
        inputs = Container(labels=True)
        inputs.extend([self._files, self._folder, self._pattern, self._output])
        inputs.margins = (0, 0, 0, 0)
        options = Container(labels=True)
        options.extend(
            [
                self._axes,
                self._stitch,
                self._diameter,
                self._augment,
                self._overwrite,
                self._scheduler,
                self._planes_per_task,
            ]
        )
        options.margins = (0, 0, 0, 0)
        self.options_section = Section(
            "Options",
            options,
            expanded=False,
            tooltip="Axes, 3-D joining, object size, augmentation, redoing outputs, a Dask cluster",
        )
        buttons = Container(widgets=[self._run, self._cancel], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        bars = Container(labels=True)
        bars.extend([self._overall.bar, self._file_bar])
        bars.margins = (0, 0, 0, 0)
        body = Container(
            widgets=[
                inputs,
                self.options_section,
                self.model,
                buttons,
                bars,
                self._status,
                self.table,
                self._details,
                self._open,
            ],
            labels=False,
        )
        body.margins = (6, 6, 6, 6)
        self.margins = (0, 0, 0, 0)
        self.native.layout().addWidget(scrolling(body))
        self._run.changed.connect(self.run)
        self._cancel.changed.connect(self.cancel)
        self._open.changed.connect(self._on_open_clicked)
        self.table.native.currentCellChanged.connect(lambda row, *_: self._show_details(row))

        # torch and the model load in the background: the dock shows at once
        self._closed = False
        self.native.destroyed.connect(lambda *_: setattr(self, "_closed", True))
        self._set_status("Loading PyTorch and the model in the background (a few seconds)…")
        self.loading: FunctionWorker | None = preload_worker(self._models, self.model.path)
        self.loading.finished.connect(self._on_loaded)
        start_loading(self.loading)

    def _on_loaded(self) -> None:
        self.loading = None
        if self._closed:
            return
        self.model.refresh_devices()
        if self._status.value.startswith("Loading PyTorch"):
            self._set_status("")

    # -- inputs -----------------------------------------------------------------------------
    def _set_status(self, text: str) -> None:
        self._status.value = text
        self._status.tooltip = text

    def set_inputs(
        self,
        files: list[Path] | None = None,
        folder: Path | None = None,
        pattern: str = "*",
        output: Path | None = None,
    ) -> None:
        """Fill the input and output fields (what a person does with the file dialogs)."""
        self._files.value = files or None
        self._folder.value = folder
        self._pattern.value = pattern
        self._output.value = output

    def _request(self) -> BatchRequest | None:
        paths: list[Path] = list(self._files.value or ())
        if self._folder.value is not None:
            paths.append(Path(self._folder.value))
        output = self._output.value
        if not paths or output is None or self.model.path is None:
            self._set_status("Choose files or a folder, an output folder and a model first.")
            return None
        try:
            inputs = find_inputs(paths, pattern=str(self._pattern.value).strip() or "*")
        except InputError as error:
            self._set_status(str(error))
            return None
        if not inputs:
            self._set_status(f"No TIFF files matching {self._pattern.value!r} in the chosen folder.")
            return None
        from napari_unet.core.batch.local import BatchSettings

        axes = str(self._axes.value).strip() or None
        settings = BatchSettings(
            axes=axes, stitch=bool(self._stitch.value), overwrite=bool(self._overwrite.value)
        )
        return BatchRequest(
            inputs,
            Path(output),
            self.model.path,
            str(self.model.device.value),
            settings,
            str(self._scheduler.value).strip(),
            int(self._planes_per_task.value),
            self._diameter.diameter,
            bool(self._augment.value),
        )

    # -- running ----------------------------------------------------------------------------
    def run(self) -> GeneratorWorker | None:
        """Start the batch in a worker (what Run does); ``None`` if nothing was started."""
        if self.worker is not None:
            return None
        request = self._request()
        if request is None:
            return None
        self.results = {}
        self._rows = {path.resolve(): row for row, path in enumerate(request.inputs)}
        self.table.value = ([[path.name, "", "", "queued", ""] for path in request.inputs], [], list(COLUMNS))
        self._fit_columns()
        self._details.value = ""
        limit_torch_threads()
        self._stopped = ""
        # failures are reported in the widget (one line): job_worker does not re-raise them
        worker = job_worker(batch_job(request, self._models))
        worker.yielded.connect(self._on_progress)
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._overall.start(f"Segmenting {len(request.inputs)} files", len(request.inputs) * 1000)
        self._file_bar.value, self._file_bar.visible = 0, True
        self._run.enabled, self._cancel.enabled = False, True
        where = f"on {request.scheduler}" if request.scheduler else "here"
        self._set_status(f"Segmenting {len(request.inputs)} file(s) {where} into {request.outdir}…")
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop after the current step; finished outputs stay, the file in progress leaves nothing."""
        if self.worker is not None:
            self.worker.quit()

    def _on_progress(self, record: BatchProgress) -> None:
        if record.finished is not None:
            self._show_result(record.finished)
        if self.worker is None or self.worker.abort_requested:
            return  # records the job yielded before it saw the Cancel
        share = record.metrics.get("file", 0.0)
        self._file_bar.value = round(share * 100) if record.finished is None else 100
        self._status.value = record.message
        # last: napari's activity bar processes events, so the job's end may be handled inside
        self._overall.update(Progress(round((record.step + share) * 1000), record.total * 1000))

    def _show_result(self, result: FileResult) -> None:
        self.results[result.input] = result
        row = self._rows.get(result.input.resolve())
        if row is None:
            return
        done = result.status == "done"
        message = (
            result.error
            or " ".join(result.notices)  # e.g. a blank image
            or (str(result.output) if result.status != "failed" else "")
        )
        self.table.data[row] = [
            result.input.name,
            result.objects if done else "",
            f"{result.seconds:.1f} s" if done else "",
            result.status,
            message,
        ]
        table = self.table.native
        for column in range(table.columnCount()):
            table.item(row, column).setToolTip(f"{result.input.name}: {result.status}\n{message}")
        selected = table.currentRow()
        if selected == row or (selected < 0 and result.status == "failed"):
            self._show_details(row)

    def _fit_columns(self) -> None:
        """All five columns in the dock, one line a file.

        Long names and messages are elided in the middle; they are whole in
        each row's tooltip and, for the selected row, in the line under the table.
        """
        header = self.table.native.horizontalHeader()
        header.setMinimumSectionSize(30)
        for column in (1, 2, 3):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.resizeSection(0, 110)
        header.setStretchLastSection(True)

    def _show_details(self, row: int) -> None:
        """Show the whole message of table row ``row`` under the table."""
        table = self.table.native
        if not 0 <= row < table.rowCount():
            self._details.value = ""
            return
        name, status, message = (table.item(row, column).text() for column in (0, 3, 4))
        self._details.value = f"{name} ({status}): {message}" if message else ""

    def _on_error(self, error: Exception) -> None:
        self._stopped = f"Batch stopped: {error}"
        show_error(self._stopped)

    def _on_aborted(self) -> None:
        self._stopped = "Cancelled"

    def _on_finished(self) -> None:
        self.worker = None
        self._overall.close()
        self._file_bar.visible = False
        self._run.enabled, self._cancel.enabled = True, False
        counts = {status: 0 for status in ("done", "skipped", "failed")}
        for result in self.results.values():
            counts[result.status] += 1
        summary = f"{counts['done']} segmented, {counts['skipped']} already done, {counts['failed']} failed"
        if self._stopped == "Cancelled":
            self._set_status(
                f"Cancelled after {len(self.results)} file(s) ({summary}): finished outputs are kept; "
                "Run again to resume."
            )
        else:
            self._set_status(self._stopped or f"Finished: {summary}.")

    # -- results ----------------------------------------------------------------------------
    def _on_open_clicked(self) -> None:
        row = self.table.native.currentRow()
        if row >= 0:
            self.open_result(row)

    def open_result(self, row: int) -> napari.layers.Labels | None:
        """Add the input image and the labels of table row ``row`` to the viewer."""
        result = next((r for r in self.results.values() if self._rows.get(r.input.resolve()) == row), None)
        if result is None or result.status == "failed" or not result.output.is_file():
            self._set_status("That file has no result to open.")
            return None
        try:
            with TiffImage(result.output) as labels_file:
                labels, size = np.asarray(labels_file), labels_file.pixel_size
            image = tifffile.imread(result.input)
        except (InputError, OSError, ValueError) as error:
            self._set_status(str(error))
            return None
        scale = None
        if size is not None:
            spacing = {"Z": size.z, "Y": size.y, "X": size.x}
            with tifffile.TiffFile(result.output) as tiff:
                axes = str(tiff.series[0].axes)
            scale = [spacing.get(a) or 1.0 for a in axes]
        with contextlib.suppress(ValueError):  # an image napari cannot show next to them
            self._viewer.add_image(
                image, name=result.input.stem, scale=scale if image.ndim == labels.ndim else None
            )
        layer = self._viewer.add_labels(labels, name=f"{result.input.stem} labels", scale=scale)
        self._set_status(f"Opened {result.output.name}: {int(labels.max())} labels.")
        return layer
