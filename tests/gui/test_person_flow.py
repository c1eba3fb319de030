"""The widget as a person uses it: image first, then the dock from the Plugins menu, buttons by their text.

Edits go through the Labels layer's own tools (``paint``, ``fill``, ``data_setitem``);
results are read from the layers.  Private attributes are only read, to assert.
"""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QAbstractSpinBox, QLabel, QPushButton

SEGMENT_TIMEOUT_MS = 60_000


def open_widget(viewer):
    """Plugins > U-Net segmentation."""
    return viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")


def button(widget, text: str) -> QPushButton:
    """The push button labelled ``text`` (exactly one)."""
    found = [b for b in widget.native.findChildren(QPushButton) if b.text() == text]
    assert len(found) == 1, f"{len(found)} buttons read {text!r}"
    return found[0]


def click(widget, text: str) -> None:
    target = button(widget, text)
    assert target.isEnabled(), f"{text!r} is disabled"
    target.click()


def spin_box(widget, label: str) -> QAbstractSpinBox:
    """The spin box next to the label ``label``."""
    for candidate in widget.native.findChildren(QLabel):
        if candidate.text() == label:
            found = candidate.parentWidget().findChildren(QAbstractSpinBox)
            if len(found) == 1:
                return found[0]
    raise AssertionError(f"no spin box labelled {label!r}")


def status(widget) -> str:
    return str(widget._status.value)


def wait_idle(qtbot, widget, timeout: int = SEGMENT_TIMEOUT_MS) -> None:
    """Until no segmentation or training runs (Segment can be pressed again)."""
    qtbot.waitUntil(
        lambda: (
            widget.segment_worker is None
            and not widget.finetune.running
            and button(widget, "Segment").isEnabled()
        ),
        timeout=timeout,
    )


def segment(qtbot, widget) -> None:
    click(widget, "Segment")
    wait_idle(qtbot, widget)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def test_image_opened_before_the_widget_is_segmented(qtbot, viewer, nuclei_image, shown_messages):
    image = viewer.add_image(nuclei_image, name="cells")
    _, widget = open_widget(viewer)
    assert widget._image.value is image
    assert "Open an image" not in widget._axes_info.value
    segment(qtbot, widget)
    labels = viewer.layers["cells labels"]
    assert labels.data.max() >= 5, status(widget)
    assert status(widget).startswith("Segmented cells")

    # layers opened and closed later are followed
    other = viewer.add_image(nuclei_image[:128, :128].copy(), name="crop")
    assert widget._image.value is other
    viewer.layers.remove(other)
    assert widget._image.value is image
    viewer.layers.remove(labels)
    viewer.layers.remove(image)
    assert widget._image.value is None
    assert widget._axes_info.value == "Open an image"
    click(widget, "Segment")
    assert status(widget) == "Choose an image and a model first."


def test_widget_starts_with_the_selected_image(viewer, nuclei_image):
    first = viewer.add_image(nuclei_image, name="first")
    viewer.add_image(nuclei_image[:100, :100].copy(), name="second")
    viewer.layers.selection.active = first
    _, widget = open_widget(viewer)
    assert widget._image.value is first
    assert widget._axes.value == "YX"
