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


def run_job(person, panel: ModelPanel, button: str) -> None:  # noqa: ANN001
    """Click ``button`` and wait for the job it starts."""
    person.click(panel, button)
    assert panel.worker is not None, panel.reports
    person.qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)


@pytest.fixture
def two_versions(private_folders) -> tuple[Path, Path]:
    first = save_version(tiny(1))
    second = save_version(tiny(2, parent=load_model(first.path)))
    return first.path, second.path


def test_the_newest_version_is_selected_and_manage_shows_its_hash_and_parent(qtbot, person, two_versions):
    first, second = two_versions
    panel = ModelPanel(ModelCache(), print)
    qtbot.addWidget(panel.native)
    assert panel.path == str(second), "the current version of the default model is preselected"
    assert not panel.managing
    person.click(panel, "Manage…")
    assert panel.managing
    child = load_model(second)
    assert (
        panel.details.value
        == f"weights {child.weights_hash()}; from nuclei-v1 ({load_model(first).weights_hash()})"
    )
    assert child.weights_hash() in panel.model.tooltip
    actions = ("Rename…", "Delete", "Roll back", "Export…")
    assert all(person.button(panel, text).isVisibleTo(panel.native) for text in actions)
    assert all(person.button(panel, text).isEnabled() for text in actions)

    panel.select(bundled_model_path("phase-cells"))
    enabled = {text: person.button(panel, text).isEnabled() for text in actions}
    assert not enabled["Rename…"] and not enabled["Delete"], "bundled models stay as they are"
    assert enabled["Roll back"] and enabled["Export…"]


def test_rename_rollback_and_delete_from_the_panel(person, panel, two_versions, private_folders):
    first, second = two_versions
    person.click(panel, "Manage…")

    panel.select(first)
    run_job(person, panel, "Roll back")
    assert panel.path.endswith("nuclei-v3.pt") and "Restored nuclei-v1 as nuclei-v3" in panel.reports[-1]
    assert load_model(panel.path).weights_hash() == load_model(first).weights_hash()

    panel.ask_new_name = lambda old: "lab-nuclei"
    run_job(person, panel, "Rename…")
    assert panel.path == str(private_folders / "models" / "lab-nuclei.pt")
    assert (
        panel.model.native.currentText() == "lab-nuclei"
        and "Renamed nuclei-v3 to lab-nuclei." in panel.reports
    )

    panel.ask_new_name = lambda old: "../outside"
    run_job(person, panel, "Rename…")
    assert "not a valid model name" in panel.reports[-1] and Path(panel.path).is_file()

    panel.select(second)
    panel.confirm_delete = lambda name: name == "nuclei-v2"
    run_job(person, panel, "Delete")
    assert not second.exists() and panel.reports[-1] == "Deleted nuclei-v2."
    assert [v.name for v in list_versions("nuclei")] == ["nuclei-v1"]
    assert panel.path == str(first), "the family's current version is selected after a delete"


def test_export_writes_a_package_that_opens_as_a_model(person, panel, two_versions, tmp_path):
    _, second = two_versions
    panel.select(second)
    person.click(panel, "Manage…")
    target = tmp_path / "shared.zip"
    panel.ask_export_path = lambda suggested: str(target)
    run_job(person, panel, "Export…")
    assert target.is_file() and "Exported a bioimage.io package" in panel.reports[-1], panel.reports
    with zipfile.ZipFile(target) as archive:
        assert "rdf.yaml" in archive.namelist()

    panel.ask_model_file = lambda: str(target)
    person.click(panel, "Open model file…")
    assert panel.path == str(target)
    assert panel.details.value.startswith(f"weights {load_model(second).weights_hash()}")
