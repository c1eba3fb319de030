"""Model and device pickers, and the model store's controls (rename, delete, roll back, export)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from magicgui.widgets import ComboBox, Container, PushButton
from napari.qt.threading import FunctionWorker, create_worker
from qtpy.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from napari_unet.core.models.registry import (
    BUNDLED_MODELS,
    MODEL_SUFFIX,
    bundled_model_path,
    user_model_dir,
    user_models,
)
from napari_unet.core.models.store import (
    ModelVersion,
    current_version,
    delete_model,
    describe_choice,
    family_of,
    parent_of,
    rename_model,
    rollback,
    starting_model,
)
from napari_unet.core.training.validation import describe, validation_of
from napari_unet.gui.layout import TextLine
from napari_unet.gui.workers import ModelCache


def available_devices() -> list[str]:
    """Device names available to torch, ``auto`` first (imports torch)."""
    import torch

    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _ask_model_file() -> str | None:
    path, _ = QFileDialog.getOpenFileName(
        None, "Open a napari-unet model", "", "Models (*.pt *.zip);;bioimage.io packages (*.zip)"
    )
    return path or None


def _ask_new_name(current: str) -> str | None:
    name, ok = QInputDialog.getText(None, "Rename model", f"New name for {current}:", text=current)
    return name.strip() if ok and name.strip() else None


def _confirm_delete(name: str) -> bool:
    answer = QMessageBox.question(
        None, "Delete model", f"Delete {name} from your models? Its file is removed; this cannot be undone."
    )
    return answer == QMessageBox.StandardButton.Yes


def _ask_export_path(suggested: str) -> str | None:
    path, _ = QFileDialog.getSaveFileName(
        None, "Export as a bioimage.io model package", suggested, "bioimage.io package (*.zip)"
    )
    return path or None


def _export(models: ModelCache, model_path: str, output: str) -> Path:
    from napari_unet.core.models.bioimageio.export import export_package

    return export_package(models.get(model_path), output)


class ModelPanel(Container):
    """Model picker ("Open model file…", "Previous version", "Manage…") and device picker.

    "Manage…" shows the selected model's weights hash and parent, and buttons
    to rename or delete it (models in the store), roll back to it (it becomes
    the newest version of its family), and export it as a bioimage.io package.
    These run in a background worker; :attr:`worker` is the running one.

    Parameters
    ----------
    models : ModelCache
    report : callable
        Shows a one-line status message.
    on_previous : callable, optional
        Called after "Previous version" selected the earlier model.

    Attributes
    ----------
    ask_model_file, ask_new_name, confirm_delete, ask_export_path : callable
        Dialogs (tests replace them).
    worker : FunctionWorker or None

    """

    def __init__(
        self,
        models: ModelCache,
        report: Callable[[str], None],
        on_previous: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)
        self._models = models
        self._report = report
        self._on_previous = on_previous
        self._extra: dict[str, str] = {}
        self.ask_model_file: Callable[[], str | None] = _ask_model_file
        self.ask_new_name: Callable[[str], str | None] = _ask_new_name
        self.confirm_delete: Callable[[str], bool] = _confirm_delete
        self.ask_export_path: Callable[[str], str | None] = _ask_export_path
        self.worker: FunctionWorker | None = None
        self._managing = False

        self.model = ComboBox(label="Model", choices=self._choices)
        self._open = PushButton(
            text="Open model file…", tooltip="A .pt model or a bioimage.io package (.zip)"
        )
        self._previous = PushButton(
            text="Previous version", tooltip="Select the model this one was tuned from"
        )
        self._manage = PushButton(
            text="Manage…", tooltip="Hash and lineage; rename, delete, roll back, export"
        )
        buttons = Container(
            widgets=[self._open, self._previous, self._manage], layout="horizontal", labels=False
        )
        buttons.margins = (0, 0, 0, 0)
        self.details = TextLine()
        self._rename = PushButton(text="Rename…", tooltip="Rename this model in your model folder")
        self._delete = PushButton(text="Delete", tooltip="Delete this model from your model folder")
        self._rollback = PushButton(
            text="Roll back", tooltip="Make this model the current one again: saved as the newest version"
        )
        self._export = PushButton(text="Export…", tooltip="Write a bioimage.io model package (.zip)")
        self._actions = [self._rename, self._delete, self._rollback, self._export]
        actions = Container(widgets=self._actions, layout="horizontal", labels=False)
        actions.margins = (0, 0, 0, 0)
        self._manage_area = Container(widgets=[self.details, actions], labels=False, visible=False)
        self._manage_area.margins = (0, 0, 0, 0)
        # the GPUs are listed once torch is loaded (in the background: see refresh_devices)
        self._devices = ["auto", "cpu"]
        self.device = ComboBox(label="Device", choices=lambda _: self._devices, value="auto")
        self.device_used = TextLine()
        self.choice = TextLine()
        self.extend([self.model, self.choice, buttons, self._manage_area, self.device, self.device_used])

        self._open.changed.connect(self._on_open_clicked)
        self._previous.changed.connect(self._on_previous_clicked)
        self._manage.changed.connect(self._on_manage_clicked)
        self._rename.changed.connect(self._on_rename_clicked)
        self._delete.changed.connect(self._on_delete_clicked)
        self._rollback.changed.connect(self._on_rollback_clicked)
        self._export.changed.connect(self._on_export_clicked)
        self.model.changed.connect(self._on_model_changed)
        self.device.changed.connect(self._on_device_changed)
        self.select_default()
        self._show_choice()

    def _choices(self, _: Any = None) -> list[tuple[str, str]]:
        bundled = [(n, str(bundled_model_path(n))) for n in BUNDLED_MODELS if bundled_model_path(n).is_file()]
        mine = [(name, str(path)) for name, path in user_models().items()]
        extra = [(name, path) for path, name in self._extra.items() if Path(path).is_file()]
        return bundled + mine + extra

    @property
    def path(self) -> str | None:
        """File of the selected model."""
        return self.model.value

    def select(self, path: str | Path) -> None:
        """Select a model file (added to the choices if it is not listed)."""
        path = str(Path(path))
        if path not in {listed for _, listed in self._choices()}:
            self._extra[path] = Path(path).stem
        self.model.reset_choices()
        self.model.value = path

    def select_default(self) -> None:
        """Select the current (newest) version of the default model, or the bundled default.

        See :func:`~napari_unet.core.models.store.starting_model`.
        """
        path = starting_model()
        self.model.reset_choices()
        if path.is_file():
            self.select(path)

    def _on_open_clicked(self) -> None:
        path = self.ask_model_file()
        if path:
            self.select(path)

    def _on_previous_clicked(self) -> None:
        if self.path is None:
            return
        try:
            parent = parent_of(self._models.get(self.path))
        except ValueError as error:
            self._report(str(error))
            return
        parent = dict(self._choices()).get(parent or "", parent)
        if parent is None or not Path(parent).is_file():
            self._report("This model has no earlier version here.")
            return
        self.select(parent)
        self._report(f"Selected the previous version, {Path(parent).stem}.")
        if self._on_previous is not None:
            self._on_previous()

    # -- managing the store ------------------------------------------------------------------
    def _stored_name(self) -> str | None:
        """The selected model's name if its file is in the user's model folder."""
        if self.path is None:
            return None
        path = Path(self.path)
        in_store = path.suffix == MODEL_SUFFIX and path.parent.resolve() == user_model_dir().resolve()
        return path.stem if in_store else None

    @property
    def managing(self) -> bool:
        """Whether the "Manage…" area (hash, lineage, store buttons) is open."""
        return self._managing

    def _on_manage_clicked(self) -> None:
        self._managing = not self._managing
        self._manage_area.visible = self._managing
        self._refresh_details()

    def _on_model_changed(self, _: Any = None) -> None:
        self._show_choice()
        self._refresh_details()

    def _show_choice(self) -> None:
        """Say which model and version runs, and why, in the words of ``napari-unet models``."""
        self.choice.value = describe_choice(self.path) if self.path else "Choose a model."

    def _refresh_details(self) -> None:
        if not self._managing:
            return
        stored = self._stored_name()
        bundled = self.path is not None and self.path in {str(bundled_model_path(n)) for n in BUNDLED_MODELS}
        idle = self.worker is None
        self._rename.enabled = self._delete.enabled = idle and stored is not None
        self._rollback.enabled = idle and (stored is not None or bundled)
        self._export.enabled = idle and self.path is not None
        if self.path is None:
            self.details.value = ""
            return
        try:
            bundle = self._models.get(self.path)
        except ValueError as error:
            self.details.value = str(error)
            return
        parent = bundle.provenance.get("parent")
        lineage = f"; from {parent} ({bundle.provenance.get('parent_hash', '?')})" if parent else ""
        record = validation_of(bundle)
        scored = f"; {describe(record)}" if record is not None else ""
        self.details.value = f"weights {bundle.weights_hash()}{lineage}{scored}"
        self.details.tooltip = self.model.tooltip = (
            f"{bundle.name}: weights hash {bundle.weights_hash()}{lineage}{scored}"
        )

    def _run(self, job: Callable[..., Any], *args: Any, done: Callable[[Any], None]) -> FunctionWorker:
        # an "errored" handler of our own: without one, the worker would re-raise in the GUI thread
        self.worker = worker = create_worker(
            job,
            *args,
            _start_thread=False,
            _connect={"returned": done, "errored": self._on_job_errored, "finished": self._on_job_finished},
        )
        for button in self._actions:
            button.enabled = False
        worker.start()
        return worker

    def _on_job_errored(self, error: Exception) -> None:
        self._report(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)

    def _on_job_finished(self) -> None:
        self.worker = None
        self._refresh_details()

    def _on_rename_clicked(self) -> None:
        old = self._stored_name()
        new = self.ask_new_name(old) if old else None
        if old and new and new != old:
            self._run(
                rename_model, old, new, done=lambda path: self._after_change(path, f"Renamed {old} to {new}.")
            )

    def _on_delete_clicked(self) -> None:
        name = self._stored_name()
        if name and self.confirm_delete(name):
            self._run(delete_model, name, done=lambda _: self._after_delete(name))

    def _on_rollback_clicked(self) -> None:
        if self.path is None:
            return
        name = self._stored_name() or Path(self.path).stem

        def done(version: ModelVersion) -> None:
            self._after_change(
                version.path, f"Restored {name} as {version.name}, now the current {version.family}."
            )

        self._run(rollback, name, done=done)

    def _on_export_clicked(self) -> None:
        if self.path is None:
            return
        output = self.ask_export_path(str(Path.home() / f"{Path(self.path).stem}.zip"))
        if output:
            self._report(f"Exporting {Path(self.path).stem} to {output}…")
            self._run(
                _export,
                self._models,
                self.path,
                output,
                done=lambda path: self._report(f"Exported a bioimage.io package (validated): {path}"),
            )

    def _after_change(self, path: str | Path, message: str) -> None:
        self.select(path)
        self._report(message)

    def _after_delete(self, name: str) -> None:
        newest = current_version(family_of(name))
        if newest is not None:
            self.select(newest.path)
        else:
            self.select_default()
        self._report(f"Deleted {name}.")

    def refresh_devices(self) -> None:
        """List the available devices and say which one runs (call once torch is imported)."""
        self._devices = available_devices()
        self.device.reset_choices()
        self._on_device_changed(self.device.value)

    def _on_device_changed(self, name: str) -> None:
        from napari_unet.core.devices import choose_device

        try:
            self.device_used.value = f"will run on {choose_device(name)}"
        except ValueError as error:
            self.device_used.value = str(error)
