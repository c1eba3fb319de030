import os
import pickle
from pathlib import Path

import pytest
import torch

from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
from napari_unet.core.devices import choose_device
from napari_unet.core.models.files import ModelBundle, ModelFileError, save_model
from napari_unet.core.models.network import UNet
from napari_unet.core.models.registry import BUNDLED_MODELS, bundled_model_path, load_model, resolve_model


def small_bundle(seed: int = 0, width: int = 4) -> ModelBundle:
    torch.manual_seed(seed)
    return ModelBundle(
        network=UNet(ModelConfig(base_width=width, depth=2)).eval(),
        preprocess=PreprocessConfig(object_diameter=17.0),
        postprocess=PostprocessConfig(min_size=3),
        name="tiny",
        provenance={"parent": None, "steps": 0},
    )


def test_round_trip_keeps_weights_config_and_provenance(tmp_path: Path) -> None:
    bundle = small_bundle()
    path = save_model(bundle, tmp_path / "tiny.pt")
    loaded = load_model(path)
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(bundle.network(x), loaded.network(x))
    assert loaded.config == bundle.config
    assert loaded.preprocess == bundle.preprocess
    assert loaded.postprocess == bundle.postprocess
    assert loaded.provenance == {"parent": None, "steps": 0}
    assert loaded.weights_hash() == bundle.weights_hash()
    assert loaded.source == str(path)
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.pt"], "temporary file left behind"
    assert path.stat().st_mode & 0o044, "model files should be readable like any other file"


def test_truncated_file_gives_one_clear_error(tmp_path: Path) -> None:
    path = save_model(small_bundle(), tmp_path / "tiny.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"tiny\.pt: not a readable model file"):
        load_model(path)


def test_unknown_format_version_is_refused(tmp_path: Path) -> None:
    path = save_model(small_bundle(), tmp_path / "tiny.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="format version 99 is not supported"):
        load_model(path)


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    path = save_model(small_bundle(), tmp_path / "tiny.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = small_bundle(width=8).network.state_dict()
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="weights do not match the architecture"):
        load_model(path)


class _Exploit:
    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (Path.touch, (Path(self.target),))


def test_malicious_pickle_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    exploit = _Exploit()
    exploit.target = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format": "napari-unet-model", "payload": exploit}, path, pickle_module=pickle)
    with pytest.raises(ModelFileError, match="refused to load"):
        load_model(path)
    assert not marker.exists()


class _Shell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (self.command,))


def test_model_file_that_would_call_os_system_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "nuclei.pt"
    payload = {"format": "napari-unet-model", "format_version": 1, "state_dict": _Shell(f"touch {marker}")}
    torch.save(payload, path, pickle_module=pickle)
    with pytest.raises(
        ModelFileError, match=r"nuclei\.pt: refused to load: the file holds objects other than"
    ):
        load_model(path)
    assert not marker.exists()


def test_altered_weights_are_detected_by_their_recorded_hash(tmp_path: Path) -> None:
    path = save_model(small_bundle(), tmp_path / "tiny.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["weights_hash"] == small_bundle().weights_hash()
    payload["state_dict"]["head.bias"] += 1.0
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match="differ from their recorded hash"):
        load_model(path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state_dict": [1, 2, 3]}, "not a dictionary of named tensors"),
        ({"state_dict": {"stem.0.weight": "text"}}, "not a dictionary of named tensors"),
        ({"model": {"base_width": -1}}, "invalid configuration"),
        ({"model": {"heads": ["colour"]}}, "invalid configuration"),
        ({"provenance": [1]}, "invalid provenance"),
    ],
)
def test_malformed_contents_give_one_clear_error(tmp_path: Path, change: dict, message: str) -> None:
    path = save_model(small_bundle(), tmp_path / "tiny.pt")
    payload = torch.load(path, weights_only=True)
    payload.update(change)
    payload.pop("weights_hash")
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)


def test_resolve_model_finds_bundled_user_and_path(tmp_path: Path, private_model_dir: Path) -> None:
    assert resolve_model("nuclei") == bundled_model_path("nuclei")
    user = save_model(small_bundle(), private_model_dir / "mine.pt")
    assert resolve_model("mine") == user
    other = save_model(small_bundle(), tmp_path / "elsewhere.pt")
    assert resolve_model(str(other)) == other
    with pytest.raises(ModelFileError, match="no such model"):
        resolve_model("does-not-exist")


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bundled_models_are_real_trained_files(name: str) -> None:
    bundle = load_model(bundled_model_path(name))
    assert bundle.name == name
    assert bundle.provenance["training"]["steps"] >= 500
    assert "data" in bundle.provenance


def test_device_choice() -> None:
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            choose_device("cuda:0")
