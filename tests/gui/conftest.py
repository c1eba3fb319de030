from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from napari.utils import notifications

from napari_unet.core.models.registry import resolve_model

DATA = (
    Path(os.environ.get("NAPARI_UNET_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    / "nuclei-dsb2018"
    / "val"
    / "images"
)
IMAGE = DATA / "05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13.tif"


@pytest.fixture(autouse=True)
def private_folders(tmp_path, monkeypatch):
    """Models and corrections go to the test's own folders; one torch thread (a 2-core CI)."""
    monkeypatch.setenv("NAPARI_UNET_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("NAPARI_UNET_CORRECTIONS_DIR", str(tmp_path / "corrections"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("napari_unet.gui.workers.limit_torch_threads", lambda: torch.set_num_threads(1))
    return tmp_path


@pytest.fixture
def model_path() -> Path:
    """The bundled nuclei model (``NAPARI_UNET_TEST_MODEL`` may name a stand-in while it is trained)."""
    path = resolve_model("nuclei")
    if not path.is_file() and os.environ.get("NAPARI_UNET_TEST_MODEL"):
        path = Path(os.environ["NAPARI_UNET_TEST_MODEL"])
    assert path.is_file(), f"bundled model {path} is missing"
    return path


@pytest.fixture
def nuclei_image() -> np.ndarray:
    """A real 256 x 256 fluorescence image with about 20 nuclei (tests skip without it, see below)."""
    return tifffile.imread(IMAGE)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a test that needs the shared nuclei data when it is absent, before any viewer opens.

    (Skipping inside a fixture, after ``make_napari_viewer`` has opened a viewer, makes
    napari's fixture fail at teardown.)
    """
    needs = {"nuclei_image", "nuclei_val"} & set(getattr(item, "fixturenames", ()))
    if needs and not IMAGE.is_file():
        pytest.skip(f"needs the real data nuclei-dsb2018/val (not found at {IMAGE}; set NAPARI_UNET_DATA)")


@pytest.fixture
def viewer_and_widget(make_napari_viewer, model_path):
    """A viewer with the dock widget opened through the npe2 manifest."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    widget.questions = []

    def refuse(question: str) -> bool:
        widget.questions.append(question)
        return False

    widget.confirm = refuse
    widget.select_model(model_path)
    return viewer, widget


@pytest.fixture
def shown_messages(monkeypatch: pytest.MonkeyPatch):
    """Messages shown to the person; any exception sent to napari's notifications fails the test."""
    reports: list[BaseException] = []
    shown: list[str] = []
    monkeypatch.setattr(
        notifications.notification_manager, "receive_error", lambda kind, error, *rest: reports.append(error)
    )
    monkeypatch.setattr(notifications.notification_manager, "dispatch", lambda note: shown.append(str(note)))
    yield shown
    assert reports == [], f"exceptions reached napari: {reports!r}"
