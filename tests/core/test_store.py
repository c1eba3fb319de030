from __future__ import annotations

import threading

import pytest
import torch

from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
from napari_unet.core.model import UNet
from napari_unet.core.store import family_of, list_versions, parent_of, save_version
from napari_unet.core.weights import ModelBundle, load_model, resolve_model, user_model_dir


@pytest.fixture(autouse=True)
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "models"


def tiny_bundle(name: str = "nuclei", source: str = "") -> ModelBundle:
    torch.manual_seed(0)
    network = UNet(ModelConfig(base_width=4, depth=2)).eval()
    return ModelBundle(network, PreprocessConfig(), PostprocessConfig(), name=name, source=source)


def test_family_of():
    assert family_of("nuclei") == "nuclei"
    assert family_of("nuclei-v12") == "nuclei"
    assert family_of("my-model-v2") == "my-model"
    assert family_of("v2") == "v2"


def test_versions_number_up_and_record_parent(model_dir, tmp_path):
    first = save_version(tiny_bundle(source="/somewhere/nuclei.pt"))
    assert first.name == "nuclei-v1" and first.path == model_dir / "nuclei-v1.pt"
    loaded = load_model(first.path)
    assert loaded.name == "nuclei-v1"
    assert loaded.provenance["parent"] == "nuclei"
    assert loaded.provenance["parent_source"] == "/somewhere/nuclei.pt"

    child = load_model(first.path)
    child.provenance = {**child.provenance, "parent": child.name, "parent_source": child.source}
    second = save_version(child)
    assert second.name == "nuclei-v2"
    assert parent_of(load_model(second.path)) == str(first.path)
    assert [v.name for v in list_versions("nuclei-v2")] == ["nuclei-v1", "nuclei-v2"]
    assert resolve_model("nuclei-v2") == second.path
    assert not list(tmp_path.glob("*.pt")), "nothing may be written to the working directory"
    assert not [p for p in model_dir.iterdir() if p.name.startswith(".")], "no temporary files left"


def test_concurrent_saves_never_overwrite(model_dir):
    bundles = [tiny_bundle() for _ in range(4)]
    threads = [threading.Thread(target=save_version, args=(b,)) for b in bundles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [v.number for v in list_versions("nuclei")] == [1, 2, 3, 4]
    assert sorted(b.name for b in bundles) == [f"nuclei-v{i}" for i in (1, 2, 3, 4)]


def test_list_versions_ignores_other_files(model_dir):
    assert list_versions() == []
    save_version(tiny_bundle(name="em"))
    (model_dir / "notes.txt").write_text("x")
    (model_dir / "plain.pt").write_bytes(b"")
    assert [v.name for v in list_versions()] == ["em-v1"]
    assert user_model_dir() == model_dir
