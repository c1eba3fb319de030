"""The widget while jobs run: layers removed or replaced, double clicks, overlapping jobs, closing.

A gate holds the network's first forward pass until the test has done its
interference, so the order of events is the same on every run (and the
network, not a sleep, is what the worker waits in).  Every test also checks
that no exception reached napari's notification manager (what a person sees
as an error with a traceback); pytest-qt fails a test on any exception raised
in a Qt slot.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from napari_unet.core.models.registry import load_model
from napari_unet.core.models.store import list_versions
from napari_unet.core.segmentation.segmenter import Segmenter
from napari_unet.core.training import finetune
from napari_unet.core.training.corrections import CorrectionStore
from napari_unet.gui import progress_bar, workers

pytestmark = pytest.mark.usefixtures("shown_messages")  # no exception may reach napari


class Gate:
    """Blocks :meth:`Segmenter._forward` in the first thread that calls it while closed, until opened.

    ``entered`` says a worker is waiting.  Other threads pass (a fine-tuning scores its
    snapshots with the network while the held segmentation waits).
    """

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.holder: int | None = None


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch):
    gate = Gate()
    forward = Segmenter._forward

    def gated_forward(self: Segmenter, batch: np.ndarray) -> np.ndarray:
        if not gate.opened.is_set() and gate.holder in (None, threading.get_ident()):
            gate.holder = threading.get_ident()
            gate.entered.set()
            gate.opened.wait(60)
        return forward(self, batch)

    monkeypatch.setattr(Segmenter, "_forward", gated_forward)
    yield gate
    gate.opened.set()  # never leave a worker blocked


@pytest.fixture
def every_record_in_napari_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    """Send every progress record to napari's activity bar, which processes Qt events when updated.

    On a slow machine (records more than 0.5 s apart) this is what happens anyway: the
    job's end can then be handled *inside* a progress callback, which must not undo it.
    """
    monkeypatch.setattr(progress_bar, "NAPARI_BAR_INTERVAL_S", 0.0)


def wait_idle(qtbot, widget, timeout: int = 60_000) -> None:
    qtbot.waitUntil(lambda: widget.segment_worker is None and not widget.finetune.running, timeout=timeout)


def segmented(qtbot, viewer, widget, image, name: str = "cells"):
    layer = viewer.add_image(image, name=name)
    assert widget.segment() is not None
    wait_idle(qtbot, widget)
    return layer, viewer.layers[f"{name} labels"]


def paint(labels_layer, centre: tuple[int, int], value: int) -> None:
    labels_layer.brush_size = 7
    labels_layer.paint(centre, value)


def saved_corrections(folder) -> list:
    store = CorrectionStore(folder)
    return [c for key in store.keys() for c in store.load(key)]


def small_training(person, widget, steps: int) -> None:  # noqa: ANN001
    person.unfold(widget, "Fine-tune")
    person.enter(widget, "Steps", steps)
    widget.finetune.training_options.update(batch_size=1, crop_size=64)


# -- the image while it is segmented --------------------------------------------------------------
@pytest.mark.usefixtures("every_record_in_napari_bar")
def test_removing_the_image_stops_its_segmentation(qtbot, viewer_and_widget, nuclei_image, gate) -> None:
    viewer, widget = viewer_and_widget
    layer = viewer.add_image(nuclei_image, name="cells")
    worker = widget.segment()
    assert gate.entered.wait(30)
    viewer.layers.remove(layer)
    gate.opened.set()
    wait_idle(qtbot, widget)
    assert worker.abort_requested
    assert "cells labels" not in viewer.layers  # the layer made at the click went with it
    assert widget._status.value == "Cancelled (the image layer was removed): the labels are unchanged."

    # an image of the same name added afterwards is a new image, segmented normally
    _, labels_layer = segmented(qtbot, viewer, widget, nuclei_image[::-1])
    assert labels_layer.data.max() >= 5


def test_a_result_for_replaced_image_data_is_dropped(
    qtbot, person, viewer_and_widget, nuclei_image, gate
) -> None:
    viewer, widget = viewer_and_widget
    gate.opened.set()
    layer, labels_layer = segmented(qtbot, viewer, widget, nuclei_image)
    before = labels_layer.data.copy()
    gate.opened.clear()
    gate.entered.clear()
    widget.segment()
    assert gate.entered.wait(30)
    layer.data = nuclei_image[:200, :150]  # another image in the same layer
    gate.opened.set()
    wait_idle(qtbot, widget)
    np.testing.assert_array_equal(labels_layer.data, before)
    assert "changed; Segment again" in widget._status.value

    person.segment(widget)  # Segment again, as the status line says
    assert labels_layer.data.shape == (200, 150) and labels_layer.data.max() > 0


def test_segment_pressed_twice_runs_once(
    qtbot, person, viewer_and_widget, nuclei_image, gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer, widget = viewer_and_widget
    started = []
    make_worker = workers.segment_worker
    monkeypatch.setattr(
        "napari_unet.gui.widget.segment_worker", lambda *args: started.append(1) or make_worker(*args)
    )
    viewer.add_image(nuclei_image, name="cells")
    person.click(widget, "Segment")
    assert gate.entered.wait(30)
    segment = person.button(widget, "Segment")
    assert not segment.isEnabled()
    segment.click()  # disabled while running: nothing happens
    assert widget.segment() is None  # and asked directly, it refuses too
    gate.opened.set()
    wait_idle(qtbot, widget)
    assert len(started) == 1
    assert [layer.name for layer in viewer.layers] == ["cells", "cells labels"]
    assert viewer.layers["cells labels"].data.max() >= 5
    person.click(widget, "Segment")  # enabled again afterwards
    wait_idle(qtbot, widget)
    assert len(started) == 2


# -- overlapping jobs ---------------------------------------------------------------------------------
def test_fine_tune_while_segmenting_then_segment_with_the_new_version(
    qtbot, person, viewer_and_widget, nuclei_image, gate
) -> None:
    viewer, widget = viewer_and_widget
    gate.opened.set()
    _, labels_layer = segmented(qtbot, viewer, widget, nuclei_image)
    paint(labels_layer, (20, 20), 999)
    gate.opened.clear()
    gate.entered.clear()
    assert widget.segment(ask=False) is not None  # a re-run, held inside the network
    assert gate.entered.wait(30)
    small_training(person, widget, steps=2)
    parent = widget.model.path
    assert widget.finetune.start() is not None
    qtbot.waitUntil(lambda: not widget.finetune.running, timeout=60_000)
    (version,) = list_versions()
    better = load_model(version.path).provenance["held_out_validation"]["better"]
    # a version better on the corrections is selected and re-segments once the held run is done
    assert widget.model.path == (str(version.path) if better else parent)
    assert widget.segment_worker is not None and widget._resegment_when_done == better
    gate.opened.set()
    wait_idle(qtbot, widget)
    if not better:  # saved, not selected: the person picks it and segments
        widget.select_model(version.path)
        assert widget.segment(ask=False) is not None
        wait_idle(qtbot, widget)
    assert widget.postprocess._cache.model_path == str(version.path)
    assert labels_layer.data.max() > 0


def test_labels_edited_while_fine_tuning_are_kept_and_used_next_round(
    qtbot, person, viewer_and_widget, nuclei_image, private_folders, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer, widget = viewer_and_widget
    rounds: list[list] = []
    original = finetune.training_samples

    def recording(corrections, bundle):
        rounds.append(list(corrections))
        return original(corrections, bundle)

    monkeypatch.setattr(finetune, "training_samples", recording)
    _, labels_layer = segmented(qtbot, viewer, widget, nuclei_image)
    paint(labels_layer, (20, 20), 999)
    small_training(person, widget, steps=3)
    person.tick(widget, "Keep training while I correct")
    widget.finetune.start()
    qtbot.waitUntil(lambda: len(rounds) == 1, timeout=30_000)
    paint(labels_layer, (200, 200), 4242)  # while round 1 trains
    qtbot.waitUntil(lambda: len(rounds) == 2, timeout=60_000)
    first, second = ([c.labels for c in corrections] for corrections in rounds)
    assert not any((labels == 4242).any() for labels in first)
    assert any(labels[200, 200] == 4242 for labels in second)
    assert all(c.edited[200, 200] for c in rounds[1] if c.labels[200, 200] == 4242)

    qtbot.waitUntil(lambda: widget.finetune._job.latest is not None, timeout=60_000)
    widget.finetune.stop(keep=True)
    wait_idle(qtbot, widget)
    assert len(list_versions()) == 1
    # the saved version segmented the image around the edits, the one made while it trained too
    assert labels_layer.data[200, 200] == 4242 and labels_layer.data[20, 20] == 999
    assert f"with {list_versions()[0].name}" in widget._status.value
    assert "corrections on 1 plane(s) are kept" in widget._status.value
    on_disk = saved_corrections(private_folders / "corrections")
    assert any(c.labels[200, 200] == 4242 for c in on_disk)


# -- closing --------------------------------------------------------------------------------------------
def test_closing_the_viewer_mid_segmentation(qtbot, viewer_and_widget, nuclei_image, gate, private_folders):
    viewer, widget = viewer_and_widget
    gate.opened.set()
    _, labels_layer = segmented(qtbot, viewer, widget, nuclei_image)
    gate.opened.clear()
    gate.entered.clear()
    worker = widget.segment(ask=False)
    assert gate.entered.wait(30)
    paint(labels_layer, (30, 30), 777)  # within the save delay: not on disk yet
    viewer.close()
    assert worker.abort_requested
    gate.opened.set()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
    qtbot.wait(200)  # let late signals arrive: they must find nothing to touch
    (correction,) = saved_corrections(private_folders / "corrections")
    assert correction.labels[30, 30] == 777 and correction.edited[30, 30]


def test_closing_the_viewer_mid_fine_tuning_saves_nothing_half_way(
    qtbot, person, viewer_and_widget, nuclei_image, private_folders
) -> None:
    viewer, widget = viewer_and_widget
    _, labels_layer = segmented(qtbot, viewer, widget, nuclei_image)
    paint(labels_layer, (20, 20), 999)
    small_training(person, widget, steps=500)
    worker = widget.finetune.start()
    qtbot.waitUntil(lambda: len(widget.finetune.loss_plot.values) >= 1, timeout=30_000)
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
    qtbot.wait(200)
    assert worker.abort_requested
    assert list_versions() == []
    assert not [p for p in (private_folders / "models").rglob("*") if p.is_file()]
    (correction,) = saved_corrections(private_folders / "corrections")
    assert correction.labels[20, 20] == 999


def test_closing_the_dock_widget_mid_segmentation_lets_it_finish(
    qtbot, viewer_and_widget, nuclei_image, gate
) -> None:
    """napari hides a closed dock widget (it is not deleted): the job ends normally, its result lands."""
    viewer, widget = viewer_and_widget
    viewer.add_image(nuclei_image, name="cells")
    worker = widget.segment()
    assert gate.entered.wait(30)
    viewer.window.remove_dock_widget(widget.native)
    gate.opened.set()
    wait_idle(qtbot, widget)
    assert not worker.abort_requested
    assert viewer.layers["cells labels"].data.max() >= 5
    viewer.layers.remove("cells")  # the viewer goes on
    viewer.close()


# -- closing while the docks load torch and the model -------------------------------------------------
@pytest.fixture
def held_loading(monkeypatch: pytest.MonkeyPatch):
    """Holds every background load (torch and the model) until the test sets the returned event."""
    release = threading.Event()
    started = threading.Event()
    real = workers.preload

    def held(*args):  # noqa: ANN002, ANN202
        started.set()
        release.wait(60)
        return real(*args)

    monkeypatch.setattr(workers, "preload", held)
    yield started, release
    release.set()  # never leave the loading thread blocked


def test_closing_the_viewer_while_the_docks_load_leaves_the_loads_to_finish_alone(
    qtbot, make_napari_viewer, nuclei_image, held_loading
) -> None:
    started, release = held_loading
    viewer = make_napari_viewer()
    viewer.add_image(nuclei_image, name="cells")
    _, segment = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    _, batch = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net batch segmentation")
    loads = [segment.loading, batch.loading]
    assert started.wait(30)
    viewer.window.remove_dock_widget(batch.native)  # the batch dock's close button
    viewer.close()  # does not wait for the loads: they are held until now
    assert loads[0].is_running
    release.set()
    qtbot.waitUntil(lambda: not any(load.is_running for load in loads), timeout=60_000)
    qtbot.wait(
        300
    )  # their signals arrive now: they must find nothing to touch (pytest-qt fails on any raise)


CLOSE_AT_ONCE = """
import sys, time
import numpy as np
import napari
from napari_unet.gui import workers

real = workers.preload

def slow_preload(*args):
    time.sleep(1.0)  # still loading when the process ends, however fast this machine is
    bundle = real(*args)
    with open(sys.argv[1], "a") as done:
        done.write(f"{bundle.name if bundle else None}\\n")
    return bundle

workers.preload = slow_preload
viewer = napari.Viewer(show=False)
viewer.add_image(np.random.default_rng(0).random((64, 64), np.float32), name="cells")
_, segment = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
_, batch = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net batch segmentation")
viewer.window.remove_dock_widget(batch.native)
viewer.close()
print("closed", flush=True)
"""


def test_napari_closed_while_the_docks_load_exits_cleanly_once_they_loaded(tmp_path) -> None:
    """Open an image, then both docks, close them and the viewer at once, and let Python exit.

    The process used to abort at exit ("wrapped C/C++ object of type WorkerBaseSignals has
    been deleted"): the loads were still running when Qt's objects were deleted.
    """
    loaded = tmp_path / "loaded.txt"
    child = subprocess.run(
        [sys.executable, "-c", CLOSE_AT_ONCE, str(loaded)], capture_output=True, text=True, timeout=300
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert child.stdout.strip() == "closed"
    assert "has been deleted" not in child.stderr and "Traceback" not in child.stderr, child.stderr[-3000:]
    # the exit waited for both loads, each of which loaded the default model
    assert loaded.read_text().split() == ["nuclei", "nuclei"]
