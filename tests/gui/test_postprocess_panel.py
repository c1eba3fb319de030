"""The post-processing controls as a person uses them: image first, then the dock, then a model."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QComboBox

from napari_unet.core.models.registry import bundled_model_path, load_model


def choose(widget, item: str) -> None:
    """Pick ``item`` in the combo box that lists it."""
    boxes = [b for b in widget.native.findChildren(QComboBox) if b.findText(item) >= 0]
    assert len(boxes) == 1, f"{len(boxes)} combo boxes list {item!r}"
    boxes[0].setCurrentIndex(boxes[0].findText(item))


def control(panel, label: str):
    """The panel's control labelled ``label``."""
    found = [item for item in panel if item.label == label]
    assert len(found) == 1, f"{len(found)} controls labelled {label!r}"
    return found[0]


def test_a_moved_control_keeps_the_models_other_settings(qtbot, make_napari_viewer) -> None:
    """Before anything is segmented, moving a slider must not drop em-membranes' background filling."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), np.uint8), name="em")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    choose(widget, "em-membranes")
    model = load_model(bundled_model_path("em-membranes")).postprocess
    assert model.fill_background
    panel = widget.postprocess
    # the controls show the model's own settings once it is loaded
    qtbot.waitUntil(
        lambda: panel.enabled and control(panel, "Min size (px)").value == model.min_size, timeout=30_000
    )
    assert panel.config() is None  # the model's own settings until a control is moved
    control(panel, "Seed threshold").value = 0.3
    config = panel.config()
    assert config is not None
    assert config.seed_threshold == pytest.approx(0.3)
    assert config.fill_background is True
    assert config.join_threshold == pytest.approx(model.join_threshold)
