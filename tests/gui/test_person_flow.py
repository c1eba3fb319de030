"""The widget as a person uses it: image first, then the dock from the Plugins menu, buttons by their text.

Edits go through the Labels layer's own tools (``paint``, ``fill``, ``data_setitem``);
results are read from the layers.  Private attributes are only read, to assert.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QMessageBox
from scipy import ndimage as ndi

from napari_unet.core.models.registry import bundled_model_path
from napari_unet.core.models.store import list_versions


def status(widget) -> str:
    return str(widget._status.value)


def correct(labels) -> np.ndarray:
    """Erase the largest object, paint a disc, fill another object with a new id, set a few pixels.

    All through the layer's own tools; returns the pixels the person changed.
    """
    before = labels.data.copy()
    ids, sizes = np.unique(before[before > 0], return_counts=True)
    erased, relabelled = ids[np.argsort(sizes)[-2:]][::-1]
    labels.fill(tuple(np.argwhere(before == erased)[0]), 0)
    labels.fill(tuple(np.argwhere(before == relabelled)[0]), int(before.max()) + 2)
    free = ndi.distance_transform_edt(before == 0)
    centre = np.unravel_index(np.argmax(free), free.shape)
    labels.brush_size = 9
    labels.paint(centre, int(before.max()) + 1)  # the next id: a new prediction may use it too
    free[:8], free[-8:], free[:, :8], free[:, -8:] = 0, 0, 0, 0
    free[centre[0] - 12 : centre[0] + 13, centre[1] - 12 : centre[1] + 13] = 0  # away from the disc
    corner = np.argwhere(free > 4)[0]
    square = np.mgrid[corner[0] - 2 : corner[0] + 2, corner[1] - 2 : corner[1] + 2].reshape(2, -1)
    labels.data_setitem(tuple(square), int(before.max()) + 3)
    changed = labels.data != before
    assert changed[before == erased].all() and (labels.data[changed] > 0).any()
    return changed


def assert_drawn_kept(labels, drawn: np.ndarray, changed: np.ndarray) -> None:
    """Every changed pixel shows what was drawn; each drawn id means the drawn object only."""
    shown = labels.data
    assert (shown[changed] == drawn[changed]).mean() == 1.0
    for label in np.unique(drawn[changed]):
        if label:
            np.testing.assert_array_equal(shown == label, drawn == label)


def saved_info(widget) -> str:
    return str(widget.corrections._saved_info.value)


def fine_tune(person, widget, steps: int = 3) -> None:
    versions = len(list_versions())
    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", steps)
    person.click(widget, "Fine-tune")
    person.qtbot.waitUntil(lambda: len(list_versions()) == versions + 1, timeout=120_000)
    person.wait_idle(widget)


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The person answers Yes to every question; the questions asked are listed."""
    asked: list[str] = []

    def yes(parent, title, text, *rest):
        asked.append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QMessageBox, "question", yes)
    return asked


def test_image_opened_before_the_widget_is_segmented(person, viewer, nuclei_image, shown_messages):
    image = viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    assert widget._image.value is image
    assert "Open an image" not in widget._axes_info.value
    person.segment(widget)
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
    person.click(widget, "Segment")
    assert status(widget) == "Choose an image and a model first."


def test_widget_starts_with_the_selected_image(person, viewer, nuclei_image):
    first = viewer.add_image(nuclei_image, name="first")
    viewer.add_image(nuclei_image[:100, :100].copy(), name="second")
    viewer.layers.selection.active = first
    _, widget = person.open_widget(viewer)
    assert widget._image.value is first
    assert widget._axes.value == "YX"


def test_corrections_stay_through_fine_tune_previous_version_and_segment(
    person, viewer, nuclei_image, answers, shown_messages
):
    viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    person.segment(widget)
    labels = viewer.layers["cells labels"]
    segmented = labels.data.copy()
    changed = correct(labels)
    drawn = labels.data.copy()
    bundled = str(bundled_model_path("nuclei"))
    assert widget.model.path == bundled

    # a learning rate of 1 wrecks the weights, so the new version is saved but not selected
    widget.finetune.training_options = {"learning_rate": 1.0}
    fine_tune(person, widget)
    version = list_versions()[0]
    assert widget.model.path == bundled, "a version no better than its parent is not selected by itself"
    assert "stays selected" in str(widget.finetune._status.value)
    person.choose(widget, version.name)  # the person picks it anyway
    person.segment(widget)
    assert len(answers) == 1 and "What you drew stays" in answers[0]
    assert_drawn_kept(labels, drawn, changed)
    assert f"with {version.name}" in status(widget), "the image was segmented with it"
    after_fine_tune = labels.data.copy()

    labels.undo()  # Ctrl+Z undoes the re-segmentation as one step
    np.testing.assert_array_equal(labels.data, drawn)
    labels.redo()
    np.testing.assert_array_equal(labels.data, after_fine_tune)

    person.click(widget, "Previous version")
    person.wait_idle(widget)
    assert widget.model.path == bundled
    assert "with nuclei:" in status(widget) or "with nuclei." in status(widget)
    assert_drawn_kept(labels, drawn, changed)
    # away from the corrections, the bundled model's own labels are back
    untouched = ~np.isin(segmented, np.unique(segmented[changed])) & ~changed
    np.testing.assert_array_equal(labels.data[untouched] > 0, segmented[untouched] > 0)

    person.click(widget, "Segment")
    person.wait_idle(widget)
    assert len(answers) == 2 and "What you drew stays" in answers[1]
    assert_drawn_kept(labels, drawn, changed)
    assert "corrections on 1 plane(s) are kept" in status(widget)


def test_corrections_stay_after_showing_another_image(person, viewer, nuclei_image, answers):
    viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    person.segment(widget)
    labels = viewer.layers["cells labels"]
    changed = correct(labels)
    drawn = labels.data.copy()
    viewer.add_image(nuclei_image[:64, :64].copy(), name="crop")  # the widget follows it
    person.choose(widget, "cells")
    person.click(widget, "Segment")
    person.wait_idle(widget)
    assert_drawn_kept(labels, drawn, changed)
    assert len(answers) == 1


def test_feedback_while_correcting(qtbot, person, viewer, nuclei_image, shown_messages):
    viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    person.segment(widget)
    labels = viewer.layers["cells labels"]
    assert saved_info(widget) == "" and not person.button(widget, "Restore saved corrections").isEnabled()
    labels.brush_size = 7
    labels.paint((30, 30), 500)
    qtbot.waitUntil(lambda: saved_info(widget).startswith("1 corrected plane"), timeout=5000)
    assert person.button(widget, "Restore saved corrections").isEnabled()

    fine_tune(person, widget)
    assert widget.finetune.loss_plot.values, "the loss of the training is shown"
    assert str(widget.finetune._status.value).startswith("your corrections: AP@0.5 ")  # and what was saved
    viewer.add_image(nuclei_image[:64, :64].copy(), name="crop")  # another image: its own story
    assert widget.finetune.loss_plot.values == []
    assert str(widget.finetune._status.value) == "Correct some labels, then Fine-tune."
    assert saved_info(widget) == "" and not person.button(widget, "Restore saved corrections").isEnabled()

    person.choose(widget, "cells")
    assert saved_info(widget).startswith("1 corrected plane")
    fine_tune(person, widget)
    assert widget.finetune.loss_plot.values
    person.choose(widget, "phase-cells")  # another model
    assert widget.finetune.loss_plot.values == []
    assert str(widget.finetune._status.value) == "Correct some labels, then Fine-tune."


def test_restore_after_reopening_the_widget_and_the_viewer(
    qtbot, person, make_napari_viewer, nuclei_image, answers, shown_messages
):
    viewer = make_napari_viewer()
    viewer.add_image(nuclei_image, name="cells")
    dock, widget = person.open_widget(viewer)
    person.segment(widget)
    changed = correct(viewer.layers["cells labels"])
    drawn = viewer.layers["cells labels"].data.copy()
    qtbot.waitUntil(lambda: saved_info(widget).startswith("1 corrected plane"), timeout=5000)

    viewer.window.remove_dock_widget(dock)  # closed, and the labels thrown away
    viewer.layers.remove("cells labels")
    _, widget = person.open_widget(viewer)
    assert saved_info(widget).startswith("1 corrected plane")
    person.click(widget, "Restore saved corrections")
    assert_drawn_kept(viewer.layers["cells labels"], drawn, changed)

    viewer.close()
    viewer = make_napari_viewer()
    viewer.add_image(nuclei_image.copy(), name="cells, opened again")
    _, widget = person.open_widget(viewer)
    assert "Restore saved corrections" in status(widget)
    person.click(widget, "Restore saved corrections")
    labels = viewer.layers["cells, opened again labels"]
    assert_drawn_kept(labels, drawn, changed)
    person.segment(widget)  # the restored corrections stay through a re-segmentation
    assert len(answers) == 1
    assert_drawn_kept(labels, drawn, changed)


def test_the_widget_says_which_model_it_uses_in_the_words_of_the_cli(person, viewer, capsys):
    from napari_unet.cli import main
    from napari_unet.core.models.registry import load_model
    from napari_unet.core.models.store import save_version

    dock, widget = person.open_widget(viewer)
    assert widget.model.choice.value == "Uses nuclei, bundled (no fine-tuned version of it yet)."
    version = save_version(load_model(bundled_model_path("nuclei")))  # a fine-tuning of another day
    viewer.window.remove_dock_widget(dock)
    _, widget = person.open_widget(viewer)
    assert widget.model.path == str(version.path), "the widget starts with the newest fine-tuning"
    said = widget.model.choice.value
    assert said.startswith(f"Uses {version.name}, the current version of nuclei")
    assert f"napari-unet segment uses the bundled nuclei unless given --model {version.name}" in said
    assert main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert " current version of nuclei " in rows[version.name]
    assert " bundled; its current version is nuclei-v1 " in rows["nuclei"]

    person.click(widget, "Previous version")
    assert widget.model.choice.value == "Uses nuclei, bundled; its current version is nuclei-v1."


def test_corrections_on_a_stack_plane_stay(person, viewer, nuclei_image, answers, shown_messages):
    viewer.add_image(np.stack([nuclei_image, nuclei_image[::-1], nuclei_image[:, ::-1]]), name="stack")
    _, widget = person.open_widget(viewer)
    person.option(widget, "whole stack")
    person.segment(widget)
    labels = viewer.layers["stack labels"]
    before = labels.data.copy()
    assert all(before[z].max() > 0 for z in range(3))
    viewer.dims.set_current_step(0, 1)  # the person looks at the middle plane
    free = ndi.distance_transform_edt(before[1] == 0)
    centre = np.unravel_index(np.argmax(free), free.shape)
    labels.brush_size = 9
    labels.paint((1, *centre), int(before.max()) + 1)
    labels.fill((1, *np.argwhere(before[1] > 0)[0]), 0)
    drawn = labels.data.copy()
    changed = drawn != before
    assert changed[1].any() and not changed[[0, 2]].any()

    person.segment(widget)  # the whole stack again
    assert len(answers) == 1
    assert_drawn_kept(labels, drawn, changed)
    # the other planes are the new prediction, numbered apart from the corrected plane's objects
    for z in (0, 2):
        assert not np.isin(labels.data[z], np.unique(labels.data[1])[1:]).any()
