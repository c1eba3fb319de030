from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels

from napari_unet.gui.layers import EditTracker, labels_transform, layer_axes


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
    assert len(calls) == 3
    tracker.forget([(2,)])
    assert tracker.edited_planes() == {(0,), (1,)}
    tracker.disconnect()
    layer.paint((0, 20, 20), 1)
    assert len(calls) == 3
