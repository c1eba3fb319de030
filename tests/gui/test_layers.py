from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from napari_unet.gui.layers import (
    EditTracker,
    labels_plane_selector,
    labels_transform,
    layer_axes,
    replace_labels,
)


def test_layer_axes_follow_napari_rgb():
    assert layer_axes(Image(np.zeros((10, 20, 30)))) == "ZYX"
    assert layer_axes(Image(np.zeros((20, 30)))) == "YX"
    assert layer_axes(Image(np.zeros((20, 30, 3), np.uint8), rgb=True)) == "YXC"
    assert layer_axes(Image(np.zeros((5, 20, 30, 3), np.uint8), rgb=True)) == "ZYXC"
    assert layer_axes(Image(np.zeros((4, 20, 30, 3)), rgb=False)) == "TZYX"


def test_labels_transform_drops_the_channel_axis():
    layer = Image(np.zeros((2, 20, 30)), scale=(1, 0.5, 0.25), translate=(0, 3, 4))
    assert labels_transform(layer, "CYX") == {"scale": (0.5, 0.25), "translate": (3.0, 4.0)}
    rgb = Image(np.zeros((20, 30, 3), np.uint8), rgb=True, scale=(2, 3))
    assert labels_transform(rgb, "YXC")["scale"] == (2.0, 3.0)


def test_edit_tracker_records_brush_fill_and_setitem_per_plane():
    layer = Labels(np.zeros((3, 32, 32), np.int32))
    layer.data[2, 10:20, 10:20] = 4
    calls = []
    tracker = EditTracker(layer, "ZYX", calls.append)
    layer.brush_size = 5
    layer.paint((0, 5, 5), 7)
    assert calls[-1] == {(0,)} and tracker.plane((0,))[5, 5]
    layer.fill((2, 15, 15), 0)
    assert calls[-1] == {(2,)} and tracker.plane((2,))[10:20, 10:20].all()
    layer.data_setitem((np.array([1]), np.array([3]), np.array([4])), 9)
    assert calls[-1] == {(1,)}
    assert tracker.edited_planes() == {(0,), (1,), (2,)}
    layer.data[0, 0, 0] = 5  # a write by the plugin is not an edit
    with tracker.paused():
        layer.data_setitem((np.array([1]), np.array([30]), np.array([30])), 3)
    assert len(calls) == 3 and not tracker.plane((1,))[30, 30]
    tracker.disconnect()
    layer.paint((0, 20, 20), 1)
    assert len(calls) == 3


def test_replace_labels_is_one_undo_step_of_the_changed_pixels():
    layer = Labels(np.zeros((3, 16, 16), np.int32))
    layer.brush_size = 3
    layer.paint((1, 8, 8), 5)  # a person's stroke, then the plugin writes planes 1 and 2
    before = layer.data.copy()
    planes = [np.full((16, 16), 2, np.int32), np.eye(16, dtype=np.int32) * 7]
    replace_labels(layer, [labels_plane_selector("ZYX", (i,)) for i in (1, 2)], planes)
    np.testing.assert_array_equal(layer.data[1], planes[0])
    np.testing.assert_array_equal(layer.data[2], planes[1])
    layer.undo()
    np.testing.assert_array_equal(layer.data, before)  # the write is undone, the stroke stays
    layer.redo()
    np.testing.assert_array_equal(layer.data[2], planes[1])


def test_replace_labels_writes_large_changes_without_undo(monkeypatch):
    from napari_unet.gui import layers

    monkeypatch.setattr(layers, "UNDO_PIXELS", 10)
    layer = Labels(np.zeros((2, 8, 8), np.int32))
    plane = np.full((8, 8), 3, np.int32)
    replace_labels(layer, [labels_plane_selector("ZYX", (np.int64(1),))], [plane])
    np.testing.assert_array_equal(layer.data[1], plane)
    layer.undo()  # nothing recorded: too large
    np.testing.assert_array_equal(layer.data[1], plane)
