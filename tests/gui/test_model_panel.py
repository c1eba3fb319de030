from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.network import UNet
from napari_unet.core.models.registry import bundled_model_path, load_model
from napari_unet.core.models.store import list_versions, save_version
from napari_unet.gui.model_panel import ModelPanel
from napari_unet.gui.workers import ModelCache


def tiny(seed: int, parent: ModelBundle | None = None) -> ModelBundle:
    torch.manual_seed(seed)
    bundle = ModelBundle(
        UNet(ModelConfig(base_width=4, depth=2)).eval(),
        PreprocessConfig(),
        PostprocessConfig(),
        name="nuclei",
    )
    if parent is not None:
        bundle.provenance = {
            "parent": parent.name,
            "parent_hash": parent.weights_hash(),
            "parent_source": parent.source,
        }
    return bundle


@pytest.fixture
def panel(qtbot) -> ModelPanel:
    panel = ModelPanel(ModelCache(), lambda message: panel.reports.append(message))
    panel.reports = []
    qtbot.addWidget(panel.native)
    return panel


def run_job(qtbot, panel: ModelPanel, button) -> None:  # noqa: ANN001
    button.changed.emit(True)
    assert panel.worker is not None, panel.reports
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)


@pytest.fixture
def two_versions(private_folders) -> tuple[Path, Path]:
    first = save_version(tiny(1))
    second = save_version(tiny(2, parent=load_model(first.path)))
    return first.path, second.path


def test_the_newest_version_is_selected_and_manage_shows_its_hash_and_parent(qtbot, two_versions):
    first, second = two_versions
    panel = ModelPanel(ModelCache(), print)
    qtbot.addWidget(panel.native)
    assert panel.path == str(second), "the current version of the default model is preselected"
    assert not panel.managing
    panel._manage.changed.emit(True)
    assert panel.managing
    child = load_model(second)
    assert (
        panel.details.value
        == f"weights {child.weights_hash()}; from nuclei-v1 ({load_model(first).weights_hash()})"
    )
    assert child.weights_hash() in panel.model.tooltip
    assert (
        panel._rename.enabled and panel._delete.enabled and panel._rollback.enabled and panel._export.enabled
    )

    panel.select(bundled_model_path("phase-cells"))
    assert not panel._rename.enabled and not panel._delete.enabled, "bundled models stay as they are"
    assert panel._rollback.enabled and panel._export.enabled


def test_rename_rollback_and_delete_from_the_panel(qtbot, panel, two_versions, private_folders):
    first, second = two_versions
    panel._manage.changed.emit(True)

    panel.select(first)
    run_job(qtbot, panel, panel._rollback)
    assert panel.path.endswith("nuclei-v3.pt") and "Restored nuclei-v1 as nuclei-v3" in panel.reports[-1]
    assert load_model(panel.path).weights_hash() == load_model(first).weights_hash()

    panel.ask_new_name = lambda old: "lab-nuclei"
    run_job(qtbot, panel, panel._rename)
    assert panel.path == str(private_folders / "models" / "lab-nuclei.pt")
    assert (
        panel.model.native.currentText() == "lab-nuclei"
        and "Renamed nuclei-v3 to lab-nuclei." in panel.reports
    )

    panel.ask_new_name = lambda old: "../outside"
    run_job(qtbot, panel, panel._rename)
    assert "not a valid model name" in panel.reports[-1] and Path(panel.path).is_file()

    panel.select(second)
    panel.confirm_delete = lambda name: name == "nuclei-v2"
    run_job(qtbot, panel, panel._delete)
    assert not second.exists() and panel.reports[-1] == "Deleted nuclei-v2."
    assert [v.name for v in list_versions("nuclei")] == ["nuclei-v1"]
    assert panel.path == str(first), "the family's current version is selected after a delete"


def test_export_writes_a_package_that_opens_as_a_model(qtbot, panel, two_versions, tmp_path):
    _, second = two_versions
    panel.select(second)
    panel._manage.changed.emit(True)
    target = tmp_path / "shared.zip"
    panel.ask_export_path = lambda suggested: str(target)
    run_job(qtbot, panel, panel._export)
    assert target.is_file() and "Exported a bioimage.io package" in panel.reports[-1], panel.reports
    with zipfile.ZipFile(target) as archive:
        assert "rdf.yaml" in archive.namelist()

    panel.ask_model_file = lambda: str(target)
    panel._open.changed.emit(True)
    assert panel.path == str(target)
    assert panel.details.value.startswith(f"weights {load_model(second).weights_hash()}")
