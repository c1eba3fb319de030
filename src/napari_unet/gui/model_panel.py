"""Model and device pickers: bundled models, the user's versions, or any model file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from magicgui.widgets import ComboBox, Container, Label, PushButton
from qtpy.QtWidgets import QFileDialog

from napari_unet.core.store import parent_of
from napari_unet.core.weights import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    bundled_model_path,
    choose_device,
    user_models,
)
from napari_unet.gui.workers import ModelCache


def available_devices() -> list[str]:
    """Device names this machine offers, ``auto`` first."""
    devices = ["auto", "cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def _ask_model_file() -> str | None:
    path, _ = QFileDialog.getOpenFileName(None, "Open a napari-unet model", "", "Model files (*.pt)")
    return path or None


class ModelPanel(Container):
    """Model picker (with "Open model file…" and "Previous version") and device picker.

    Parameters
    ----------
    models : ModelCache
    report : callable
        Shows a one-line status message.

    Attributes
    ----------
    ask_model_file : callable
        Asks for a model file (a file dialog by default; tests replace it).

    """

    def __init__(self, models: ModelCache, report: Callable[[str], None]) -> None:
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)
        self._models = models
        self._report = report
        self._extra: dict[str, str] = {}
        self.ask_model_file: Callable[[], str | None] = _ask_model_file
        self.model = ComboBox(label="Model", choices=self._choices)
        self._open = PushButton(text="Open model file…")
        self._previous = PushButton(
            text="Previous version", tooltip="Select the model this one was tuned from"
        )
        self.device = ComboBox(label="Device", choices=available_devices(), value="auto")
        self.device_used = Label(value="")
        buttons = Container(widgets=[self._open, self._previous], layout="horizontal", labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend([self.model, buttons, self.device, self.device_used])
        self._open.changed.connect(self._on_open_clicked)
        self._previous.changed.connect(self._on_previous_clicked)
        self.device.changed.connect(self._on_device_changed)
        paths = dict(self._choices())
        if DEFAULT_MODEL in paths:
            self.model.value = paths[DEFAULT_MODEL]
        self._on_device_changed(self.device.value)

    def _choices(self, _: Any = None) -> list[tuple[str, str]]:
        bundled = [(n, str(bundled_model_path(n))) for n in BUNDLED_MODELS if bundled_model_path(n).is_file()]
        mine = [(name, str(path)) for name, path in user_models().items()]
        extra = [(name, path) for path, name in self._extra.items()]
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

    def _on_device_changed(self, name: str) -> None:
        try:
            self.device_used.value = f"will run on {choose_device(name)}"
        except ValueError as error:
            self.device_used.value = str(error)
