"""What the widget tells a person about the image itself: blank, or not what the model was made for."""

from __future__ import annotations

import numpy as np
import tifffile
from qtpy.QtWidgets import QComboBox, QPushButton

SEGMENT_TIMEOUT_MS = 60_000


def open_widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    return widget


def choose_model(widget, name: str) -> None:
    [combo] = [b for b in widget.native.findChildren(QComboBox) if b.findText(name) >= 0]
    combo.setCurrentIndex(combo.findText(name))


def segment(qtbot, widget) -> str:
    [button] = [b for b in widget.native.findChildren(QPushButton) if b.text() == "Segment"]
    button.click()
    qtbot.waitUntil(lambda: widget.segment_worker is None and button.isEnabled(), timeout=SEGMENT_TIMEOUT_MS)
    return str(widget._status.value)


def test_a_blank_image_has_no_objects_and_the_status_says_why(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((300, 300), np.uint8), name="blank")
    widget = open_widget(viewer)
    choose_model(widget, "em-membranes")  # fills the background: one object covering all, before
    status = segment(qtbot, widget)
    assert not viewer.layers["blank labels"].data.any()
    assert status.startswith("Segmented blank: 0 objects"), status
    assert status.endswith("The image is blank (constant): no objects."), status


def test_a_colour_brightfield_image_gets_a_hint_naming_a_better_model(qtbot, make_napari_viewer, data_folder):
    folder = data_folder("nuclei-dsb2018-other/val") / "images"
    colour = next(image for image in map(tifffile.imread, sorted(folder.glob("*.tif"))) if image.ndim == 3)
    viewer = make_napari_viewer()
    viewer.add_image(colour, name="histology")  # napari shows it as RGB
    widget = open_widget(viewer)
    width = widget.native.parentWidget().sizeHint().width()
    status = segment(qtbot, widget)  # with the default model, nuclei (fluorescence)
    assert status.startswith("Segmented histology:"), status
    assert "Hint: this is a colour image with a bright background" in status
    assert status.endswith("nuclei-brightfield segments nuclei in such images.")
    # the status line wraps: the hint does not widen the dock
    assert widget.native.parentWidget().sizeHint().width() == width
