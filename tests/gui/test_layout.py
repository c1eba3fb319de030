"""The docks on a laptop screen: they open at once, scroll, fold, wrap long text, keep a sane width."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QApplication, QComboBox, QPushButton, QScrollArea, QToolButton

from napari_unet.core.models.registry import bundled_model_path, load_model
from napari_unet.gui.layout import TextLine, breakable

LAPTOP = (1366, 768)
MAX_DOCK_WIDTH = 420
# a DSB 2018 file name, as the layer of an image opened from the data set is called
LONG_NAME = "05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13.tif"


def open_docks(viewer):
    _, segment = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    _, batch = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net batch segmentation")
    return segment, batch


def dock_of(widget):
    return widget.native.parentWidget()


def push_button(widget, text: str) -> QPushButton:
    found = [b for b in widget.native.findChildren(QPushButton) if b.text() == text]
    assert len(found) == 1, f"{len(found)} buttons read {text!r}"
    return found[0]


def section_header(widget, title: str) -> QToolButton:
    found = [b for b in widget.native.findChildren(QToolButton) if b.text() == title]
    assert len(found) == 1, f"{len(found)} section titles read {title!r}"
    return found[0]


def settle() -> None:
    for _ in range(5):
        QApplication.processEvents()


@pytest.fixture
def laptop_viewer(make_napari_viewer, nuclei_image):
    """A napari window of a 1366 x 768 screen, with a DSB image opened first."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*LAPTOP)
    viewer.add_image(nuclei_image, name=LONG_NAME)
    return viewer


def test_both_docks_fit_a_laptop_screen(laptop_viewer):
    segment, batch = open_docks(laptop_viewer)
    settle()
    window = laptop_viewer.window._qt_window
    assert window.width() <= LAPTOP[0] and window.height() <= LAPTOP[1], window.size()
    docks = [dock_of(segment), dock_of(batch)]
    for dock in docks:
        assert dock.sizeHint().width() <= MAX_DOCK_WIDTH, dock.sizeHint()
        assert dock.width() <= MAX_DOCK_WIDTH, dock.size()
    # stacked on the right, both fit in the height left by the menu and status bars
    assert sum(dock.minimumSizeHint().height() for dock in docks) <= LAPTOP[1] - 100
    assert laptop_viewer.window._qt_viewer.canvas.native.width() >= 500

    # every button can be scrolled into view, inside the window
    for widget, texts in ((segment, ["Segment", "Fine-tune"]), (batch, ["Run", "Open selected result"])):
        for header in widget.native.findChildren(QToolButton):
            if not header.isChecked():
                header.click()
        settle()
        area = widget.native.findChild(QScrollArea)
        for text in texts:
            target = push_button(widget, text)
            area.ensureWidgetVisible(target)
            settle()
            top_left = target.mapTo(window, target.rect().topLeft())
            bottom_right = target.mapTo(window, target.rect().bottomRight())
            assert window.rect().contains(top_left) and window.rect().contains(bottom_right), text
            viewport = area.viewport()
            corner = target.mapTo(viewport, target.rect().bottomLeft())
            assert viewport.rect().contains(corner), f"{text!r} cannot be scrolled into view"


def test_long_status_text_wraps_instead_of_widening_the_dock(qtbot, laptop_viewer):
    segment, batch = open_docks(laptop_viewer)
    settle()
    widths = [dock_of(segment).width(), dock_of(batch).width()]
    push_button(segment, "Segment").click()
    qtbot.waitUntil(lambda: push_button(segment, "Segment").isEnabled(), timeout=60_000)
    settle()
    assert segment._status.value.startswith(f"Segmented {LONG_NAME}:"), segment._status.value
    assert [dock_of(segment).width(), dock_of(batch).width()] == widths
    assert dock_of(segment).sizeHint().width() <= MAX_DOCK_WIDTH
    # the whole line is shown on several rows, and in full as the tooltip
    status = segment._status.native
    assert status.height() >= 2 * status.fontMetrics().height()
    assert status.toolTip() == segment._status.value


def test_sections_fold_and_unfold_by_their_title(laptop_viewer):
    segment, batch = open_docks(laptop_viewer)
    settle()
    # first use: image, model and Segment, then corrections; the rest folded
    assert section_header(segment, "Corrections").isChecked()
    assert push_button(segment, "Restore saved corrections").isVisible()
    for title, inside in (("Post-processing", None), ("Fine-tune", "Fine-tune")):
        header = section_header(segment, title)
        assert not header.isChecked()
        if inside:
            assert not push_button(segment, inside).isVisible()
        header.click()
        settle()
        assert header.isChecked()
        if inside:
            assert push_button(segment, inside).isVisible()
    options = section_header(batch, "Options")
    assert not options.isChecked()
    options.click()
    assert batch.options_section.expanded


def test_text_line_keeps_the_given_text_and_asks_for_no_width(qtbot):
    line = TextLine()
    qtbot.addWidget(line.native)
    short_hint = line.native.sizeHint().width()
    line.value = f"Corrections saved in /home/someone/.local/share/napari-unet/corrections/{LONG_NAME}"
    assert line.value.endswith(LONG_NAME)
    assert "\u200b" in line.native.text()
    assert line.native.minimumSizeHint().width() < 200
    assert line.native.sizeHint().width() <= max(short_hint, 300)
    # a break opportunity at least every 16 characters of a long word, none in short ones
    assert all(len(part) <= 16 for part in breakable(LONG_NAME).split("\u200b"))
    assert breakable("3 objects.") == "3 objects."


def slider_values(widget) -> dict[str, float]:
    return {control.label: control.value for control in widget.postprocess}


def shown_settings(config) -> dict[str, float]:
    return {
        "Probability": config.foreground_threshold,
        "Seed threshold": config.seed_threshold,
        "Min size (px)": config.min_size,
        "Join threshold": config.join_threshold,
        "Object probability": config.object_probability,
    }


def test_the_dock_opens_at_once_and_loads_the_model_in_the_background(
    qtbot, make_napari_viewer, nuclei_image
):
    viewer = make_napari_viewer()
    viewer.add_image(nuclei_image, name="cells")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    # shown before the model is loaded: the status says so and the post-processing waits for it
    assert widget.loading is not None
    assert widget._status.value.startswith("Loading PyTorch and nuclei"), widget._status.value
    assert not widget.postprocess.enabled
    qtbot.waitUntil(lambda: widget.loading is None, timeout=60_000)
    assert widget.postprocess.enabled
    assert widget._status.value == "nuclei is loaded."
    assert widget.model.device_used.value == "will run on cpu"
    # the sliders show the model's own settings from the start, not the panel's defaults
    nuclei = load_model(bundled_model_path("nuclei")).postprocess
    assert slider_values(widget) == pytest.approx(shown_settings(nuclei))

    # another model: its settings once it is loaded
    combo = next(b for b in widget.native.findChildren(QComboBox) if b.findText("em-membranes") >= 0)
    combo.setCurrentIndex(combo.findText("em-membranes"))
    assert not widget.postprocess.enabled
    qtbot.waitUntil(lambda: widget.loading is None, timeout=60_000)
    membranes = load_model(bundled_model_path("em-membranes")).postprocess
    assert slider_values(widget) == pytest.approx(shown_settings(membranes))
    assert widget.postprocess.enabled


def test_the_batch_dock_lists_devices_once_loaded(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    _, batch = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net batch segmentation")
    assert batch.loading is not None
    assert batch._status.value.startswith("Loading PyTorch")
    qtbot.waitUntil(lambda: batch.loading is None, timeout=60_000)
    assert batch._status.value == ""
    assert batch.model.device_used.value == "will run on cpu"


def test_fine_tune_unfolds_once_there_is_a_correction_to_train_on(qtbot, laptop_viewer):
    segment, _ = open_docks(laptop_viewer)
    push_button(segment, "Segment").click()
    qtbot.waitUntil(lambda: push_button(segment, "Segment").isEnabled(), timeout=60_000)
    fine_tune = section_header(segment, "Fine-tune")
    assert not fine_tune.isChecked()
    labels = laptop_viewer.layers[f"{LONG_NAME} labels"]
    labels.brush_size = 9
    labels.paint((30, 30), int(labels.data.max()) + 1)
    qtbot.waitUntil(fine_tune.isChecked, timeout=10_000)
    assert push_button(segment, "Fine-tune").isVisible()

    # folded by the person: it stays folded as more corrections come
    fine_tune.click()
    assert not fine_tune.isChecked()
    [saved] = segment.recorder.store.folder.rglob("*.npz")
    first = saved.stat().st_mtime_ns
    labels.paint((60, 60), int(labels.data.max()) + 1)
    qtbot.waitUntil(lambda: saved.stat().st_mtime_ns != first, timeout=10_000)  # written again
    qtbot.wait(300)  # the "written" callback arrives through the event loop
    assert not fine_tune.isChecked()
