"""Hostile layers through the widget: what a person can open in napari, then Segment.

Each gives a labels layer of the image's spatial shape, or one clear message
that names the layer (or model file) and the reason; never an exception.
The bundled ``nuclei`` model segments images of four nuclei-sized disks.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_unet.core.models.store import list_versions
from napari_unet.core.training.corrections import CorrectionStore

pytestmark = pytest.mark.usefixtures("shown_messages")  # no exception may reach napari

DISK_CENTRES = ((20, 20), (20, 60), (44, 40), (46, 78))


def disks() -> np.ndarray:
    yy, xx = np.mgrid[:64, :96]
    image = np.zeros((64, 96), np.uint8)
    for cy, cx in DISK_CENTRES:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 81] = 200
    return image


def nan_speckled(image: np.ndarray) -> np.ndarray:
    speckled = np.where(image > 0, 1.0, 0.0).astype(np.float16)
    speckled[::7, ::5] = np.where(image[::7, ::5] > 0, speckled[::7, ::5], np.nan)
    speckled[1, 1], speckled[2, 2] = np.inf, -np.inf
    return speckled


def layouts(tmp_path):
    """(name, data, layer options, axes to type or None, labels shape, objects per plane or None)."""
    d = disks()
    memmap = np.lib.format.open_memmap(tmp_path / "stack.npy", mode="w+", dtype=np.uint16, shape=(2, 64, 96))
    memmap[:] = d
    memmap.flush()
    rows = np.zeros((3, 5000), np.uint8)
    rows[1, ::50] = 255
    return [
        ("bool", d > 0, {}, None, (64, 96), 4),
        ("uint64 huge", d.astype(np.uint64) * 2**50, {}, None, (64, 96), 4),
        ("int8 negative", (d // 2 - 128).astype(np.int8), {}, None, (64, 96), 4),
        ("float16 NaN Inf", nan_speckled(d), {}, None, (64, 96), 4),
        ("float64 huge range", np.where(d > 0, 1e300, -1e300), {}, None, (64, 96), 4),
        ("1x1", d[:1, :1], {}, None, (1, 1), None),
        ("1xN", d[20:21], {}, None, (1, 96), None),
        ("3x5000", rows, {}, None, (3, 5000), None),
        ("constant", np.full((64, 96), 9, np.uint16), {}, None, (64, 96), 0),
        ("RGB blue nuclei", np.stack([0 * d, 0 * d, d], -1), {"rgb": True}, None, (64, 96), 4),
        ("RGBA", np.stack([d, d, d, np.full_like(d, 255)], -1), {"rgb": True}, None, (64, 96), 4),
        ("7 channels", np.stack([0 * d] * 3 + [d] + [0 * d] * 3), {}, "CYX", (64, 96), 4),
        ("6-D", np.broadcast_to(d, (1, 2, 1, 2, 64, 96)).copy(), {}, None, (1, 2, 1, 2, 64, 96), 4),
        ("dask", da.from_array(np.stack([d, d]), chunks=(1, 32, 48)), {}, None, (2, 64, 96), 4),
        ("strided", np.repeat(np.repeat(d, 2, 0), 2, 1)[::2, ::2], {}, None, (64, 96), 4),
        ("memmap", np.load(tmp_path / "stack.npy", mmap_mode="r"), {}, None, (2, 64, 96), 4),
        ("multiscale", [d, d[::2, ::2]], {"multiscale": True}, None, (64, 96), 4),
    ]


def test_every_kind_of_image_layer_gives_labels(
    qtbot, person, viewer_and_widget, tmp_path, shown_messages
) -> None:
    viewer, widget = viewer_and_widget
    for name, data, options, axes, shape, objects in layouts(tmp_path):
        layer = viewer.add_image(data, name=name, **options)
        assert widget._image.value is layer
        if axes:
            person.enter(widget, "Axes", axes)
        if person.radio(widget, "whole stack").isEnabled():  # offered for stacks only
            person.option(widget, "whole stack")
        assert widget.segment() is not None, (name, widget._status.value)
        qtbot.waitUntil(lambda: widget.segment_worker is None, timeout=60_000)
        assert widget._status.value.startswith(f"Segmented {name}:"), widget._status.value
        labels = viewer.layers[f"{name} labels"].data
        assert labels.shape == shape, name
        if objects is not None:
            planes = labels.reshape(-1, 64, 96)
            assert all(len(np.unique(p[p > 0])) == objects for p in planes), name
    assert shown_messages == []  # no error message either


def test_axes_that_cannot_work_are_refused_with_the_reason(qtbot, person, viewer_and_widget) -> None:
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros((3, 64, 96), np.uint8), name="stack")
    for axes, reason in [("ZXY", "put X before Y"), ("YX", "do not match"), ("ZZX", "repeat a letter")]:
        person.enter(widget, "Axes", axes)
        assert widget.segment() is None
        assert reason in widget._status.value
    assert "stack labels" not in viewer.layers


def test_an_unreadable_model_is_one_message_naming_layer_and_file(
    qtbot, viewer_and_widget, tmp_path, shown_messages
) -> None:
    viewer, widget = viewer_and_widget
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\0" * 100)
    widget.select_model(broken)
    viewer.add_image(disks(), name="cells")
    assert widget.segment() is not None
    qtbot.waitUntil(lambda: widget.segment_worker is None, timeout=30_000)
    (message,) = shown_messages
    assert message.startswith("ERROR: Segmenting 'cells' failed: ") and str(broken) in message
    assert "not a readable model file" in message
    assert "cells labels" not in viewer.layers


def test_huge_label_ids_survive_recording_and_fine_tuning(
    qtbot, person, viewer_and_widget, private_folders
) -> None:
    """A uint8 result layer widens when more objects come; uint64 ids near 2**64 are saved without wrapping."""
    viewer, widget = viewer_and_widget
    yy, xx = np.mgrid[:220, :440]
    grid = (((yy % 22) - 11) ** 2 + ((xx % 22) - 11) ** 2 <= 64).astype(np.uint8) * 200  # 200 disks
    grid = np.concatenate([grid, grid])  # 400
    viewer.add_labels(np.zeros(grid.shape, np.uint8), name="cells labels")  # a person's own layer
    viewer.add_image(grid, name="cells")
    widget.segment()
    qtbot.waitUntil(lambda: widget.segment_worker is None, timeout=60_000)
    labels_layer = viewer.layers["cells labels"]
    assert labels_layer.data.max() == 400 and len(np.unique(labels_layer.data)) == 401  # no wrap at 255

    top = np.iinfo(np.uint64).max
    labels_layer.data = np.where(labels_layer.data > 0, top - labels_layer.data.astype(np.uint64), 0)
    labels_layer.brush_size = 5
    labels_layer.paint((11, 11), 2**63 + 5)
    widget.recorder.flush(wait=True)
    store = CorrectionStore(private_folders / "corrections")
    (correction,) = [c for key in store.keys() for c in store.load(key)]
    saved = correction.labels
    assert saved.dtype == np.int32 and saved.min() == 0
    shown = labels_layer.data
    assert len(np.unique(saved)) == len(np.unique(shown)) == 402  # 400 objects, the new one, background
    # the same partition: each shown id maps to exactly one saved id
    pairs = np.unique(np.stack([shown.ravel(), saved.ravel().astype(np.uint64)]), axis=1)
    assert pairs.shape[1] == 402

    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", 2)
    widget.finetune.training_options.update(batch_size=1, crop_size=64)
    assert widget.finetune.start() is not None
    qtbot.waitUntil(lambda: not widget.finetune.running and widget.segment_worker is None, timeout=60_000)
    assert len(list_versions()) == 1
