from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from qtpy.QtWidgets import QPushButton

from napari_unet.gui.batch_widget import BatchWidget


@pytest.fixture
def folder(tmp_path: Path, nuclei_val: Path) -> Path:
    """Three real DSB 2018 images, a small ImageJ stack with a pixel size, and a broken file."""
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((nuclei_val / "images").glob("*.tif"))[:3]:
        shutil.copy(path, folder / path.name)
    plane = tifffile.imread(folder / sorted(p.name for p in folder.iterdir())[0])
    grey = plane if plane.ndim == 2 else plane[..., 0]
    stack = np.stack([grey[:128, :128]] * 3)
    tifffile.imwrite(
        folder / "stack.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.5),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"},
    )
    (folder / "broken.tif").write_bytes(b"II*\x00 not really a TIFF")
    return folder


@pytest.fixture
def batch(make_napari_viewer, model_path: Path):
    """A viewer with the batch widget opened through the npe2 manifest."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net batch segmentation")
    assert isinstance(widget, BatchWidget)
    widget.model.select(model_path)
    widget.model.device.value = "cpu"
    return viewer, widget


def statuses(widget: BatchWidget) -> dict[str, str]:
    return {row[0]: row[3] for row in widget.table.data.to_list()}


def test_batch_menu_entries_open_the_widget(batch) -> None:
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-unet")
    for menu in ("napari/layers/segment", "napari/file/io_utilities"):
        assert "napari-unet.make_batch_widget" in [
            item.command for item in manifest.contributions.menus[menu]
        ]


def test_batch_folder_end_to_end_with_a_bad_file_cancel_and_resume(
    qtbot, batch, folder: Path, tmp_path: Path
) -> None:
    viewer, widget = batch
    out = tmp_path / "out"
    widget.set_inputs(folder=folder, output=out)

    # Cancel once the first file is done: it stays, the rest waits
    worker = widget.run()
    assert worker is not None
    worker.yielded.connect(lambda record: record.finished is not None and widget.cancel())
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget._status.value.startswith("Cancelled after 1 file(s)")
    first = sorted(folder.glob("*.tif"))[0].name  # the broken file sorts first and fails quickly
    assert statuses(widget)[first] in ("failed", "done")
    assert "queued" in statuses(widget).values()
    assert not [p for p in out.glob(".*")], "no temporary files after a cancel"

    # Run again: whatever was finished is skipped, the rest is done, the bad file reported
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=180_000)
    rows = {row[0]: row for row in widget.table.data.to_list()}
    assert sorted(rows) == sorted(p.name for p in folder.iterdir())
    assert rows["broken.tif"][3] == "failed" and "broken.tif" in rows["broken.tif"][4]
    good = [name for name in rows if name != "broken.tif"]
    assert all(rows[name][3] in ("done", "skipped") for name in good)
    assert all(rows[name][1] > 0 for name in good if rows[name][3] == "done")
    assert widget._status.value.startswith("Finished:") and "1 failed" in widget._status.value
    assert sorted(p.name for p in out.iterdir()) == sorted(good)

    # open a result: labels (and the image) land in the viewer with the file's pixel size
    row = sorted(rows).index("stack.tif")
    assert list(rows) == sorted(rows)
    labels = widget.open_result(row)
    assert labels is not None and labels.data.shape == (3, 128, 128) and labels.data.max() > 0
    assert tuple(labels.scale) == pytest.approx((2.0, 0.5, 0.5))
    assert viewer.layers["stack"].data.shape == (3, 128, 128)
    assert widget.open_result(sorted(rows).index("broken.tif")) is None


def test_batch_without_inputs_or_output_asks_for_them(batch, tmp_path: Path) -> None:
    _, widget = batch
    assert widget.run() is None
    assert "Choose files or a folder" in widget._status.value
    widget.set_inputs(folder=tmp_path, output=tmp_path / "out")
    assert widget.run() is None
    assert "No TIFF files" in widget._status.value


def test_batch_on_a_dask_cluster_fills_the_same_table(
    qtbot, person, batch, folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import distributed

    from napari_unet.core.batch import cluster as cluster_module

    chunk_sizes = []
    on_cluster = cluster_module.segment_files_on_cluster

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        chunk_sizes.append(args[5])
        return on_cluster(*args, **kwargs)

    monkeypatch.setattr(cluster_module, "segment_files_on_cluster", recording)
    _, widget = batch
    widget.set_inputs(folder=folder, pattern="[bs]*.tif", output=tmp_path / "out")  # broken.tif, stack.tif
    person.unfold(widget, "Options")
    planes_per_task = person.control(widget, "Planes per task")
    assert not planes_per_task.isVisibleTo(widget.native)  # only meaningful on a cluster
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        person.enter(widget, "Dask cluster", cluster.scheduler_address)
        assert planes_per_task.isVisibleTo(widget.native)
        person.enter(widget, "Planes per task", 2)  # the 3-plane stack goes out as two tasks
        assert widget.run() is not None
        qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert statuses(widget) == {"broken.tif": "failed", "stack.tif": "done"}
    assert tifffile.imread(tmp_path / "out" / "stack.tif").shape == (3, 128, 128)
    assert widget._status.value == "Finished: 1 segmented, 0 already done, 1 failed."
    assert chunk_sizes == [2]


def test_batch_diameter_and_augment_are_used_for_every_file(
    qtbot, person, batch, folder: Path, tmp_path: Path
) -> None:
    _, widget = batch
    image = sorted(folder.glob("*.tif"))[1]
    widget.set_inputs(files=[image], output=tmp_path / "out")
    person.unfold(widget, "Options")
    person.enter(widget, "Diameter (px)", 30.0)
    person.tick(widget, "Augment (average over flips, 4x slower)")
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    with tifffile.TiffFile(tmp_path / "out" / image.name) as tiff:
        provenance = json.loads(tiff.pages[0].description)
    assert provenance["diameter"] == 30.0 and provenance["inference"]["diameter"] == 30.0
    assert provenance["inference"]["augment"] is True


def test_batch_table_shows_each_error_whole(qtbot, batch, tmp_path: Path) -> None:
    _, widget = batch
    folder = tmp_path / "in"
    folder.mkdir()
    names = [f"{'plate-07_well-B12_' * 3}{index}.tif" for index in (1, 2)]  # long names, as microscopes write
    for name in names:
        (folder / name).write_bytes(b"II*\x00 not really a TIFF")
    widget.set_inputs(folder=folder, output=tmp_path / "out")
    run = next(b for b in widget.native.findChildren(QPushButton) if b.text() == "Run")
    run.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    table = widget.table.native
    errors = [widget.results[folder / name].error for name in names]
    assert all(errors) and all(len(error) > 60 for error in errors), errors
    for row, (name, error) in enumerate(zip(names, errors, strict=True)):
        cell = table.item(row, 4)
        assert cell.text() == error
        # wider than its column: the tooltip and the line under the table give it whole
        assert cell.toolTip() == f"{name}: failed\n{error}"
        assert table.fontMetrics().horizontalAdvance(error) > table.columnWidth(4)
    # nothing selected: the latest failure is shown; selecting a row shows that row's
    assert widget._details.value == f"{names[1]} (failed): {errors[1]}"
    table.selectRow(0)
    assert widget._details.value == f"{names[0]} (failed): {errors[0]}"
    assert widget._details.native.toolTip() == widget._details.value


def test_batch_table_says_a_blank_image_has_no_objects(qtbot, batch, tmp_path: Path) -> None:
    _, widget = batch
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "blank.tif", np.full((300, 300), 1000, np.uint16))
    widget.set_inputs(folder=folder, output=tmp_path / "out")
    run = next(b for b in widget.native.findChildren(QPushButton) if b.text() == "Run")
    run.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    [row] = widget.table.data.to_list()
    assert row[:2] == ["blank.tif", 0] and row[3] == "done"
    assert row[4] == "The image is blank (constant): no objects."
    assert not tifffile.imread(tmp_path / "out" / "blank.tif").any()
