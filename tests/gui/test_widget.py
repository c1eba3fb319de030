from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.models.registry import bundled_model_path, load_model
from napari_unet.core.models.store import list_versions
from napari_unet.core.training.corrections import CorrectionStore
from napari_unet.gui.widget import SegmentWidget


def wait_segmented(qtbot, widget, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: widget.segment_worker is None, timeout=timeout)


def wait_trained(qtbot, widget, timeout: int = 90_000) -> None:
    qtbot.waitUntil(lambda: not widget.finetune.running and widget.segment_worker is None, timeout=timeout)


def segment_image(qtbot, viewer, widget, image, **kwargs):
    layer = viewer.add_image(image, name="cells", **kwargs)
    assert widget._image.value is layer
    assert widget.segment() is not None
    wait_segmented(qtbot, widget)
    return layer, viewer.layers["cells labels"]


def correct(qtbot, labels_layer):
    """Erase one object with the fill tool and paint a new one with the brush, as a person would."""
    data = labels_layer.data
    erased = int(np.bincount(data.ravel())[1:].argmax()) + 1
    y, x = np.argwhere(data == erased)[0]
    labels_layer.fill((y, x), 0)
    labels_layer.brush_size = 9
    labels_layer.paint((20, 20), 999)
    return erased


def test_widget_is_a_dock_widget_with_menu_entry(qtbot, viewer_and_widget):
    from npe2 import PluginManager

    viewer, widget = viewer_and_widget
    assert isinstance(widget, SegmentWidget)
    manifest = PluginManager.instance().get_manifest("napari-unet")
    menu = manifest.contributions.menus["napari/layers/segment"]
    assert menu[0].command == "napari-unet.make_segment_widget"
    qtbot.waitUntil(lambda: widget.loading is None, timeout=60_000)  # torch loads in the background
    assert widget.model.device_used.value.startswith("will run on")


def test_segment_correct_and_fine_tune(qtbot, person, viewer_and_widget, nuclei_image, private_folders):
    viewer, widget = viewer_and_widget
    image_layer, labels_layer = segment_image(
        qtbot, viewer, widget, nuclei_image, scale=(0.5, 0.5), translate=(10, 20)
    )
    assert widget._axes.value == "YX"
    assert tuple(labels_layer.scale) == (0.5, 0.5) and tuple(labels_layer.translate) == (10, 20)
    segmented = labels_layer.data.copy()
    assert segmented.max() >= 5, "the nuclei model finds nuclei"
    assert widget.model.device_used.value == "ran on cpu"

    erased = correct(qtbot, labels_layer)
    assert not (labels_layer.data == erased).any() and labels_layer.data[20, 20] == 999
    painted = labels_layer.data == 999
    corrections = private_folders / "corrections"
    qtbot.waitUntil(lambda: len(list(corrections.rglob("*.npz"))) == 1, timeout=5000)
    saved = CorrectionStore(corrections).load(CorrectionStore(corrections).keys()[0])
    assert saved[0].labels[20, 20] == 999 and saved[0].edited[20, 20]
    assert saved[0].edited[segmented == erased].all()

    parent_path = widget.model.path
    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", 3)
    widget.finetune.training_options.update(batch_size=1, crop_size=64)
    assert widget.finetune.start() is not None
    wait_trained(qtbot, widget)

    versions = list_versions()
    parent = load_model(parent_path)
    assert [v.name for v in versions] == [f"{parent.name}-v1"]
    tuned = load_model(versions[0].path)
    better = tuned.provenance["held_out_validation"]["better"]
    assert widget.model.path == (str(versions[0].path) if better else parent_path)
    if not better:  # saved, not selected: the person picks it and segments
        widget.select_model(versions[0].path)
        assert widget.segment(ask=False) is not None
        wait_trained(qtbot, widget)
    assert tuned.provenance["parent_source"] == parent_path
    assert tuned.weights_hash() != parent.weights_hash()
    assert len(widget.finetune.loss_plot.values) == 3  # one per step
    # re-segmented with the new version around the corrections, which stay on screen and on disk
    assert widget.postprocess._cache.model_path == str(versions[0].path)
    np.testing.assert_array_equal(labels_layer.data == 999, painted)
    assert not labels_layer.data[segmented == erased].any()
    assert labels_layer.data.max() > 0
    assert len(list(corrections.rglob("*.npz"))) == 1
    assert widget.questions == []

    person.click(widget, "Previous version")
    assert widget.model.path == parent_path


def test_cancel_leaves_layers_as_they_were(qtbot, person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    viewer.add_image(nuclei_image, name="cells")
    worker = widget.segment()
    person.click(widget, "Cancel")
    wait_segmented(qtbot, widget)
    assert worker.abort_requested
    assert "cells labels" not in viewer.layers
    assert widget._status.value.startswith("Cancelled")
    assert widget._segment.enabled and not widget._cancel.enabled

    # a cancelled re-run leaves the existing result as it was
    widget.segment()
    wait_segmented(qtbot, widget)
    viewer.layers["cells labels"].data[:8] = 77  # content a completed re-run would replace
    labels = viewer.layers["cells labels"].data.copy()
    worker = widget.segment()
    person.click(widget, "Cancel")
    wait_segmented(qtbot, widget)
    assert worker.abort_requested and widget._status.value.startswith("Cancelled")
    np.testing.assert_array_equal(viewer.layers["cells labels"].data, labels)


def test_stop_leaves_the_model_as_it_was(qtbot, person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    _, labels_layer = segment_image(qtbot, viewer, widget, nuclei_image)
    correct(qtbot, labels_layer)
    corrected = labels_layer.data.copy()
    model = widget.model.path
    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", 500)
    widget.finetune.training_options.update(batch_size=1, crop_size=64)
    widget.finetune.start()
    qtbot.waitUntil(lambda: len(widget.finetune.loss_plot.values) >= 1, timeout=30_000)
    person.click(widget, "Stop")
    wait_trained(qtbot, widget)
    assert list_versions() == []
    assert widget.model.path == model
    np.testing.assert_array_equal(labels_layer.data, corrected)
    assert widget.finetune._status.value.startswith("Stopped")


def test_stop_and_keep_saves_a_version(qtbot, person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    _, labels_layer = segment_image(qtbot, viewer, widget, nuclei_image)
    correct(qtbot, labels_layer)
    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", 500)
    widget.finetune.training_options.update(batch_size=1, crop_size=64)
    widget.finetune.start()
    qtbot.waitUntil(lambda: widget.finetune._job.latest is not None, timeout=30_000)
    person.click(widget, "Stop and keep")
    wait_trained(qtbot, widget)
    versions = list_versions()
    assert len(versions) == 1
    kept = load_model(versions[0].path)
    assert kept.provenance["stopped_early"] and kept.provenance["steps"] >= 5
    assert widget.model.path == str(versions[0].path)


def test_segment_asks_before_segmenting_corrected_planes(qtbot, person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    _, labels_layer = segment_image(qtbot, viewer, widget, nuclei_image)
    correct(qtbot, labels_layer)
    corrected = labels_layer.data.copy()
    person.enter(widget, "Axes", "yx")  # retyping the same axes keeps the edits
    assert widget.recorder.edited_planes() == {()}
    assert widget.segment() is None  # the person said no
    assert len(widget.questions) == 1 and "corrected plane" in widget.questions[0]
    np.testing.assert_array_equal(labels_layer.data, corrected)
    widget.confirm = lambda question: True
    assert widget.segment() is not None
    wait_segmented(qtbot, widget)
    np.testing.assert_array_equal(labels_layer.data == 999, corrected == 999)  # what was drawn stays
    assert widget.recorder.edited_planes() == {()}


def test_postprocessing_reruns_on_cached_outputs(qtbot, person, viewer_and_widget, nuclei_image, monkeypatch):
    viewer, widget = viewer_and_widget
    _, labels_layer = segment_image(qtbot, viewer, widget, nuclei_image)
    before = labels_layer.data.copy()
    monkeypatch.setattr("napari_unet.gui.widget.segment_worker", None)  # the network must not run again
    person.unfold(widget, "Post-processing")
    person.enter(widget, "Join threshold", 0.05)  # touching nuclei are joined: fewer objects, same foreground
    qtbot.waitUntil(lambda: widget._status.value.startswith("Post-processing"), timeout=3000)
    assert widget.postprocess.config().join_threshold == pytest.approx(0.05)
    assert len(np.unique(labels_layer.data)) < len(np.unique(before))
    np.testing.assert_array_equal(labels_layer.data > 0, before > 0)
    person.enter(widget, "Join threshold", 1.0)
    person.enter(widget, "Object probability", 0.95)  # the least certain nuclei go
    qtbot.waitUntil(lambda: 0 < (labels_layer.data > 0).sum() < (before > 0).sum(), timeout=3000)
    assert not (labels_layer.data > 0)[before == 0].any()  # whole objects dropped, nothing added
    person.enter(widget, "Object probability", 0.0)
    person.enter(widget, "Probability", 0.9)
    qtbot.waitUntil(lambda: (labels_layer.data > 0).sum() < (before > 0).sum(), timeout=3000)
    person.enter(widget, "Min size (px)", 100_000)
    qtbot.waitUntil(lambda: not labels_layer.data.any(), timeout=3000)


def test_postprocessing_controls_show_the_chosen_models_settings(qtbot, viewer_and_widget):
    _, widget = viewer_and_widget
    widget.model.select(str(bundled_model_path("phase-cells")))
    qtbot.waitUntil(lambda: widget.loading is None, timeout=60_000)  # the model loads in the background
    expected = load_model(bundled_model_path("phase-cells")).postprocess
    assert widget.postprocess._min_size.value == expected.min_size
    assert widget.postprocess._join.value == pytest.approx(expected.join_threshold)
    assert widget.postprocess._object_probability.value == pytest.approx(expected.object_probability)
    assert widget.postprocess.config() is None  # the model's own settings until a control is moved


def test_diameter_and_augment_reach_the_segmentation(qtbot, person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    _, labels_layer = segment_image(qtbot, viewer, widget, nuclei_image)
    assert "objects ~30 px" not in widget._status.value  # estimated: not the size given below
    estimated = labels_layer.data.copy()
    person.enter(widget, "Diameter (px)", 30.0)
    person.tick(widget, "Augment (average over flips, 4x slower)")
    assert widget.segment() is not None
    wait_segmented(qtbot, widget)
    assert "objects ~30 px" in widget._status.value
    assert widget.postprocess._cache.segmenter.inference.augment
    assert not np.array_equal(labels_layer.data, estimated)
    person.enter(widget, "Diameter (px)", 0.0)  # back to estimating
    assert widget.segment() is not None
    wait_segmented(qtbot, widget)
    assert "objects ~30 px" not in widget._status.value


def test_reopened_image_offers_its_saved_corrections(qtbot, person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    _, labels_layer = segment_image(qtbot, viewer, widget, nuclei_image)
    correct(qtbot, labels_layer)
    widget.recorder.flush()
    viewer.layers.clear()
    assert not widget.corrections._restore.enabled
    viewer.add_image(nuclei_image.copy(), name="same image, new name")
    assert widget.corrections._restore.enabled
    assert "Restore saved corrections" in widget._status.value
    assert widget.corrections._saved_info.value.startswith("1 corrected plane")
    person.click(widget, "Restore saved corrections")
    restored = viewer.layers["same image, new name labels"]
    assert restored.data[20, 20] == 999
    assert widget.recorder.edited_planes() == {()}


def test_bad_axes_are_refused(person, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    viewer.add_image(nuclei_image, name="cells")
    person.enter(widget, "Axes", "ZYX")
    assert widget.segment() is None
    assert "axes" in widget._status.value


def test_rgb_image_gives_a_2d_labels_layer(qtbot, viewer_and_widget, nuclei_image):
    viewer, widget = viewer_and_widget
    viewer.add_image(np.stack([nuclei_image] * 3, axis=-1), name="rgb", rgb=True, scale=(2, 2))
    assert widget._axes.value == "YXC" and not widget._scope.enabled
    widget.segment()
    wait_segmented(qtbot, widget)
    labels = viewer.layers["rgb labels"]
    assert labels.data.shape == nuclei_image.shape and labels.data.max() > 0
    assert tuple(labels.scale) == (2, 2)
