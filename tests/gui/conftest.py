from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from napari.utils import notifications
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QToolButton,
)

from napari_unet.core.models.registry import resolve_model

DATA = (
    Path(os.environ.get("NAPARI_UNET_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    / "nuclei-dsb2018"
    / "val"
    / "images"
)
IMAGE = DATA / "05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13.tif"


@pytest.fixture(autouse=True)
def private_folders(tmp_path, monkeypatch):
    """Models and corrections go to the test's own folders; one torch thread (a 2-core CI)."""
    monkeypatch.setenv("NAPARI_UNET_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NAPARI_UNET_CORRECTIONS_DIR", str(tmp_path / "corrections"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("napari_unet.gui.workers.limit_torch_threads", lambda: torch.set_num_threads(1))
    return tmp_path


@pytest.fixture
def model_path() -> Path:
    """The bundled nuclei model (``NAPARI_UNET_TEST_MODEL`` may name a stand-in while it is trained)."""
    path = resolve_model("nuclei")
    if not path.is_file() and os.environ.get("NAPARI_UNET_TEST_MODEL"):
        path = Path(os.environ["NAPARI_UNET_TEST_MODEL"])
    assert path.is_file(), f"bundled model {path} is missing"
    return path


@pytest.fixture
def nuclei_image() -> np.ndarray:
    """A real 256 x 256 fluorescence image with about 20 nuclei (tests skip without it, see below)."""
    return tifffile.imread(IMAGE)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test that needs the shared nuclei data when it is absent, before any viewer opens.

    (Skipping inside a fixture, after ``make_napari_viewer`` has opened a viewer, makes
    napari's fixture fail at teardown.)
    """
    needs = {"nuclei_image", "nuclei_val"} & set(getattr(item, "fixturenames", ()))
    if needs and not IMAGE.is_file():
        pytest.skip(f"needs the real data nuclei-dsb2018/val (not found at {IMAGE}; set NAPARI_UNET_DATA)")


@pytest.fixture
def viewer_and_widget(make_napari_viewer, model_path):
    """A viewer with the dock widget opened through the npe2 manifest."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    widget.questions = []

    def refuse(question: str) -> bool:
        widget.questions.append(question)
        return False

    widget.confirm = refuse
    widget.select_model(model_path)
    return viewer, widget


@pytest.fixture
def shown_messages(monkeypatch: pytest.MonkeyPatch):
    """Messages shown to the person; any exception sent to napari's notifications fails the test."""
    reports: list[BaseException] = []
    shown: list[str] = []
    monkeypatch.setattr(
        notifications.notification_manager, "receive_error", lambda kind, error, *rest: reports.append(error)
    )
    monkeypatch.setattr(notifications.notification_manager, "dispatch", lambda note: shown.append(str(note)))
    yield shown
    assert reports == [], f"exceptions reached napari: {reports!r}"


class Person:
    """Uses a dock widget as a person does: buttons by their text, controls by their label.

    Nothing here touches a widget's private attributes; it goes through the Qt
    widgets a person sees.
    """

    def __init__(self, qtbot) -> None:  # noqa: ANN001 - pytest-qt's QtBot
        self.qtbot = qtbot

    @staticmethod
    def open_widget(viewer, name: str = "U-Net segmentation"):  # noqa: ANN001, ANN205
        """Plugins > ``name``; returns the dock and the widget."""
        return viewer.window.add_plugin_dock_widget("napari-unet", name)

    @staticmethod
    def _only(widget, kind: type, text: str, what: str):  # noqa: ANN001, ANN205
        """The one ``kind`` child of the dock that reads ``text``."""
        found = [b for b in widget.native.findChildren(kind) if b.text() == text]
        assert len(found) == 1, f"{len(found)} {what} read {text!r}"
        return found[0]

    @staticmethod
    def _usable(widget, target, name: str) -> None:  # noqa: ANN001
        """A person can only use a control that is enabled and on screen."""
        assert target.isEnabled(), f"{name!r} is disabled"
        assert target.isVisibleTo(widget.native), f"{name!r} is hidden (in a folded section?)"

    def button(self, widget, text: str) -> QPushButton:  # noqa: ANN001
        """The push button that reads ``text`` (exactly one)."""
        return self._only(widget, QPushButton, text, "buttons")

    def click(self, widget, text: str) -> None:  # noqa: ANN001
        """Click the enabled, visible button that reads ``text``."""
        target = self.button(widget, text)
        self._usable(widget, target, text)
        target.click()

    @staticmethod
    def unfold(widget, title: str) -> None:  # noqa: ANN001
        """Click a folded section's title (nothing to do where the dock has no such section)."""
        for header in widget.native.findChildren(QToolButton):
            if header.text() == title and header.isCheckable() and not header.isChecked():
                header.click()

    @staticmethod
    def choose(widget, item: str) -> None:  # noqa: ANN001
        """Pick ``item`` in the combo box that lists it."""
        boxes = [b for b in widget.native.findChildren(QComboBox) if b.findText(item) >= 0]
        assert len(boxes) == 1, f"{len(boxes)} combo boxes list {item!r}"
        boxes[0].setCurrentIndex(boxes[0].findText(item))

    @staticmethod
    def control(widget, label: str):  # noqa: ANN001, ANN205
        """The spin box or text field next to the label ``label``."""
        for candidate in widget.native.findChildren(QLabel):
            if candidate.text() == label:
                row = candidate.parentWidget()
                found = row.findChildren(QAbstractSpinBox) or row.findChildren(QLineEdit)
                if len(found) == 1:
                    return found[0]
        raise AssertionError(f"no spin box or text field labelled {label!r}")

    def enter(self, widget, label: str, value: float | str) -> None:  # noqa: ANN001
        """Enter ``value`` in the visible field labelled ``label`` and press Return.

        Return is what commits a slider's number field (the slider follows it).
        """
        field = self.control(widget, label)
        self._usable(widget, field, label)
        if isinstance(field, QLineEdit):
            field.setText(str(value))
        else:
            field.setValue(value)
        self.qtbot.keyClick(field, Qt.Key.Key_Return)

    def wait_idle(self, widget, timeout: int = 60_000) -> None:  # noqa: ANN001
        """Until the segmentation widget runs nothing (Segment can be pressed again)."""
        self.qtbot.waitUntil(
            lambda: (
                widget.segment_worker is None
                and not widget.finetune.running
                and self.button(widget, "Segment").isEnabled()
            ),
            timeout=timeout,
        )

    def segment(self, widget) -> None:  # noqa: ANN001
        """Click Segment and wait for the labels."""
        self.click(widget, "Segment")
        self.wait_idle(widget)

    def radio(self, widget, text: str) -> QRadioButton:  # noqa: ANN001
        """The radio button that reads ``text`` (exactly one)."""
        return self._only(widget, QRadioButton, text, "radio buttons")

    def option(self, widget, text: str) -> None:  # noqa: ANN001
        """Pick the enabled, visible radio button that reads ``text``."""
        target = self.radio(widget, text)
        self._usable(widget, target, text)
        target.click()

    def tick(self, widget, text: str, checked: bool = True) -> None:  # noqa: ANN001
        """Tick (or untick) the enabled, visible check box that reads ``text``."""
        target = self._only(widget, QCheckBox, text, "check boxes")
        self._usable(widget, target, text)
        target.setChecked(checked)


@pytest.fixture
def person(qtbot) -> Person:
    """Drives the docks through what a person sees (see :class:`Person`)."""
    return Person(qtbot)
