"""Fine-tuning as a person meets it: scored on their corrections, never silently worse.

Image first, then the dock from the Plugins menu; edits through the Labels
layer's own tools; buttons clicked by their text.  Private attributes are only read.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from qtpy.QtWidgets import QScrollArea, QWidget
from scipy import ndimage as ndi

from napari_unet.core.models.registry import bundled_model_path
from napari_unet.core.models.store import list_versions

COMPARISON = re.compile(r"your corrections: AP@0\.5 (\d\.\d\d) → (\d\.\d\d)")


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


def correct_two_objects(labels) -> None:
    """Give the largest object a new id with the fill tool and paint a new disc in free space."""
    before = labels.data.copy()
    ids, sizes = np.unique(before[before > 0], return_counts=True)
    largest = ids[np.argmax(sizes)]
    labels.fill(tuple(np.argwhere(before == largest)[0]), int(before.max()) + 2)
    free = ndi.distance_transform_edt(before == 0)
    labels.brush_size = 9
    labels.paint(np.unravel_index(np.argmax(free), free.shape), int(before.max()) + 1)


def test_a_worse_fine_tune_is_saved_and_listed_but_never_selected_by_itself(
    person, viewer, nuclei_image, shown_messages
):
    viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    person.segment(widget)
    correct_two_objects(viewer.layers["cells labels"])
    bundled = str(bundled_model_path("nuclei"))
    assert widget.model.path == bundled
    # a learning rate of 1 wrecks the weights in a few steps: the result cannot beat the bundled model
    widget.finetune.training_options = {"learning_rate": 1.0}

    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", 4)
    person.click(widget, "Fine-tune")
    person.qtbot.waitUntil(lambda: len(list_versions()) == 1, timeout=120_000)
    person.wait_idle(widget)

    version = list_versions()[0]
    said = str(widget.finetune._status.value)
    before, after = COMPARISON.search(said).groups()
    assert float(after) <= float(before), said
    assert "Not better than nuclei on your corrections, so nuclei stays selected" in said
    assert widget.model.path == bundled, "the worse version did not become the selected one"

    # it is saved and selectable; Manage… shows the same comparison for it
    person.choose(widget, version.name)
    assert widget.model.path == str(version.path)
    person.click(widget, "Manage…")
    person.qtbot.waitUntil(lambda: "your corrections" in str(widget.model.details.value), timeout=10_000)
    assert COMPARISON.search(str(widget.model.details.value)).groups() == (before, after)


def shown_whole(area: QScrollArea, widget: QWidget) -> bool:
    """Whether all of ``widget`` lies inside the part of ``area`` on screen."""
    viewport = area.viewport()
    corners = (
        widget.mapTo(viewport, widget.rect().topLeft()),
        widget.mapTo(viewport, widget.rect().bottomRight()),
    )
    return all(viewport.rect().contains(corner) for corner in corners)


def test_the_fine_tune_result_is_scrolled_into_view_on_a_small_dock(
    person, make_napari_viewer, nuclei_image, shown_messages
):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1000, 520)  # a dock far shorter than its contents
    viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    person.segment(widget)
    correct_two_objects(viewer.layers["cells labels"])
    widget.finetune.training_options = {"learning_rate": 1.0}  # a few quick steps, not better

    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", 4)
    person.click(widget, "Fine-tune")
    area = widget.native.findChild(QScrollArea)
    area.verticalScrollBar().setValue(0)  # back up to the image and the model while it trains
    result = widget.finetune._status
    assert not shown_whole(area, result.native)
    person.qtbot.waitUntil(lambda: len(list_versions()) == 1, timeout=120_000)
    person.wait_idle(widget)

    assert COMPARISON.search(str(result.value)), result.value
    assert "Not better than nuclei" in str(result.value)
    assert shown_whole(area, result.native), (area.verticalScrollBar().value(), result.native.geometry())
