from __future__ import annotations

import ast
import hashlib
import importlib.util
import io
import os
import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
import yaml

from napari_unet.core.config import InferenceConfig, ModelConfig, to_dict
from napari_unet.core.models.bioimageio.datasets import BUNDLED_TRAINING_DATA
from napari_unet.core.models.bioimageio.export import (
    BioimageioUnavailable,
    export_package,
    input_size_rule,
    network_outputs,
    output_halo,
    validate_package,
)
from napari_unet.core.models.files import ModelFileError
from napari_unet.core.models.network import UNet
from napari_unet.core.models.registry import BUNDLED_MODELS, bundled_model_path, load_model, resolve_model
from napari_unet.core.models.store import import_model, save_version
from napari_unet.core.segmentation.segmenter import segment_array


@pytest.fixture(scope="module")
def nuclei_package(tmp_path_factory) -> Path:
    return export_package(load_model(bundled_model_path("nuclei")), tmp_path_factory.mktemp("pkg") / "n.zip")


def package_architecture(package: Path, folder: Path):
    """The architecture module a bioimage.io consumer runs: the file inside the package, imported."""
    with zipfile.ZipFile(package) as archive:
        source = folder / "bioimageio_unet.py"
        source.write_bytes(archive.read("bioimageio_unet.py"))
    spec = importlib.util.spec_from_file_location(f"exported_architecture_{folder.name}", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # our own file, run here to check the package for its consumers
    return module


def rdf_of(package: Path) -> dict:
    with zipfile.ZipFile(package) as archive:
        return yaml.safe_load(archive.read("rdf.yaml"))


def rewrite(
    package: Path, target: Path, rdf: dict | None = None, files: dict[str, bytes] | None = None
) -> Path:
    """A copy of ``package`` with a changed description and/or replaced files."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as out:
        for name in source.namelist():
            if name == "rdf.yaml" and rdf is not None:
                out.writestr(name, yaml.safe_dump(rdf))
            elif files and name in files:
                out.writestr(name, files[name])
            else:
                out.writestr(name, source.read(name))
    return target


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_each_bundled_model_exports_a_package_that_bioimageio_validates(name, data_folder, tmp_path):
    bundle = load_model(bundled_model_path(name))
    # a real image of the model's kind (no image data ships with napari-unet)
    split = {
        "nuclei": "nuclei-dsb2018/val",
        "nuclei-brightfield": "nuclei-dsb2018-other/val",
        "phase-cells": "cells-usiigaci/val",
        "em-membranes": "em-isbi2012/train",
    }
    image = tifffile.imread(sorted((data_folder(split[name]) / "images").glob("*.tif"))[0])
    if bundle.config.in_channels == 3:
        assert image.ndim == 3 and image.shape[-1] == 3, "a colour (YXC) image for the colour model"
        image = np.moveaxis(image, -1, 0)
    crop = image[..., : min(image.shape[-2], 400), : min(image.shape[-1], 400)]
    package = export_package(bundle, tmp_path / f"{name}.zip", test_image=crop)

    summary = validate_package(package)
    assert summary.status == "valid-format", summary.format()
    assert not [e for d in summary.details for e in d.errors]
    unfilled = [w.loc for d in summary.details for w in d.warnings if "Needs to be filled" in w.msg]
    assert not unfilled, f"fields the validator asks for: {unfilled}"

    rdf = rdf_of(package)
    assert rdf["format_version"].startswith("0.5.")
    assert rdf["license"] == "BSD-3-Clause" and rdf["authors"] == [{"name": "napari-unet developers"}]
    assert {"pytorch_state_dict", "torchscript"} <= set(rdf["weights"])
    assert rdf["weights"]["pytorch_state_dict"]["architecture"]["callable"] == "build_unet"
    assert rdf["training_data"]["cite"][0]["doi"], "the training data is cited"
    assert {c["doi"] for c in rdf["training_data"]["cite"]} <= {c["doi"] for c in rdf["cite"]}
    data = BUNDLED_TRAINING_DATA[name]
    training = rdf["training_data"]
    assert training["source"] == data.source and training["tags"] == list(data.tags)
    assert [a["name"] for a in training["authors"]] == list(data.authors)
    assert training["documentation"]["source"] == "training_data.md"
    if data.license:
        assert training["license"] == data.license
    else:  # terms that no SPDX identifier names travel as a file
        assert training["license"]["source"] == "training_data_terms.md"
    halo, (minimum, step) = output_halo(bundle.config), input_size_rule(bundle.config)
    assert (halo, minimum, step) == (107, 230, 1), "depth 4: the receptive field's radius; any size"
    for axis in rdf["inputs"][0]["axes"][2:]:
        assert axis["size"] == {"min": minimum, "step": step}
    for axis in rdf["outputs"][0]["axes"][2:]:
        assert axis["halo"] == halo
    assert rdf["config"]["napari_unet"]["weights_hash"] == bundle.weights_hash()
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        readme = archive.read("README.md").decode()
        test_input = np.load(io.BytesIO(archive.read("test_input.npy")))
        test_output = np.load(io.BytesIO(archive.read("test_output.npy")))
        cover = iio.imread(archive.read("cover.png"), extension=".png")
    assert {"weights.pt", "weights_torchscript.pt", "bioimageio_unet.py", "README.md", "cover.png"} <= names
    assert f"# Model card: `{name}`" in readme and bundle.weights_hash() in readme
    np.testing.assert_array_equal(
        test_input[0], crop if crop.ndim == 3 else crop[None], "the test input is the image given"
    )
    assert "an image supplied when the package was exported" in readme, "the card says where it comes from"
    height = min(crop.shape[-2], 256)  # covers are kept small
    width = round(crop.shape[-1] * height / crop.shape[-2])
    assert cover.shape[0] == height and abs(cover.shape[1] - 2 * width) <= 2, "the image beside its outlines"
    assert (cover[:, -width:] != cover[:, :width]).any(axis=-1).mean() > 0.01, "outlines"
    assert "/work/" not in readme and str(Path.home()) not in readme, "no local paths in a shared package"
    assert (
        test_output.shape == (1, 3, *test_input.shape[-2:])
        and 0 <= test_output.min() <= test_output.max() <= 1
    )


def test_package_weights_reproduce_the_test_output(nuclei_package, tmp_path):
    """What a bioimage.io consumer runs: both weight formats give the package's test output."""
    with zipfile.ZipFile(nuclei_package) as archive:
        archive.extractall(tmp_path)
    rdf = rdf_of(nuclei_package)
    test_input = np.load(tmp_path / "test_input.npy")
    expected = np.load(tmp_path / "test_output.npy")
    # scale_range then clip, as the description says
    low, high = np.percentile(test_input[0], [1.0, 99.8], axis=(-2, -1), keepdims=True)
    clip = next(step["kwargs"] for step in rdf["inputs"][0]["preprocessing"] if step["id"] == "clip")
    scaled = torch.from_numpy(
        np.clip((test_input - low) / (high - low + 1e-6), clip["min"], clip["max"]).astype(np.float32)
    )

    module = package_architecture(nuclei_package, tmp_path)
    architecture = rdf["weights"]["pytorch_state_dict"]["architecture"]
    network = getattr(module, architecture["callable"])(**architecture["kwargs"]).eval()
    network.load_state_dict(torch.load(tmp_path / "weights.pt", weights_only=True), strict=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
        scripted = torch.jit.load(str(tmp_path / "weights_torchscript.pt")).eval()
    with torch.no_grad():
        from_state_dict = torch.sigmoid(network(scaled)).numpy()
        from_torchscript = torch.sigmoid(scripted(scaled)).numpy()
    np.testing.assert_allclose(from_state_dict, expected, atol=1e-5)
    np.testing.assert_allclose(from_torchscript, expected, atol=1e-4)


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_package_architecture_is_napari_unets_network(name, nuclei_package, tmp_path):
    """One network: the package's file builds napari-unet's UNet (keys, shapes, outputs) for each model."""
    bundle = load_model(bundled_model_path(name))
    packaged = package_architecture(nuclei_package, tmp_path).build_unet(**to_dict(bundle.config)).eval()
    ours = bundle.network.eval()
    assert {k: v.shape for k, v in packaged.state_dict().items()} == {
        k: v.shape for k, v in ours.state_dict().items()
    }
    packaged.load_state_dict(ours.state_dict(), strict=True)
    shape = (2, bundle.config.in_channels, 100, 70)
    image = torch.from_numpy(np.random.default_rng(0).normal(0.3, 0.2, shape).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(packaged(image), ours(image), rtol=0, atol=0)


def test_package_architecture_imports_nothing_but_torch(nuclei_package):
    with zipfile.ZipFile(nuclei_package) as archive:
        tree = ast.parse(archive.read("bioimageio_unet.py"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} <= {"__future__", "typing", "torch"}, imported


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_output_halo_is_the_receptive_field_radius(depth):
    """With positive weights every input an output depends on has a non-zero gradient: measure the reach."""
    network = UNet(ModelConfig(base_width=2, depth=depth, norm="none", heads=("foreground",)))
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(parameter.abs() + 0.01)
    multiple = 2**depth
    side = 16 * multiple
    reach = 0
    for offset in range(multiple):  # every position on the pooling grid
        image = torch.ones(1, 1, side, side, requires_grad=True)
        centre = side // 2 + offset
        network(image)[0, 0, centre, centre].backward()
        seen = (image.grad[0, 0] != 0).nonzero()
        reach = max(reach, int((seen - centre).abs().max()))
    assert reach == output_halo(network.config)
    assert input_size_rule(network.config) == (2 * reach + multiple, 1)


def test_torchscript_weights_take_any_size(nuclei_package, tmp_path):
    with zipfile.ZipFile(nuclei_package) as archive:
        archive.extract("weights_torchscript.pt", tmp_path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
        scripted = torch.jit.load(str(tmp_path / "weights_torchscript.pt")).eval()
    network = load_model(bundled_model_path("nuclei")).network.eval()
    image = torch.rand(1, 1, 57, 83)  # no multiple of 16: padded inside, as napari-unet's network does
    with torch.no_grad():
        torch.testing.assert_close(scripted(image), network(image), rtol=0, atol=1e-5)


def test_export_then_import_gives_identical_labels_on_a_real_image(nuclei_package, nuclei_val):
    original = load_model(bundled_model_path("nuclei"))
    imported = load_model(resolve_model(str(nuclei_package)))  # what --model FILE.zip does
    assert imported.weights_hash() == original.weights_hash()
    assert (imported.config, imported.preprocess, imported.postprocess) == (
        original.config,
        original.preprocess,
        original.postprocess,
    )
    assert imported.source == str(nuclei_package)
    image = tifffile.imread(sorted((nuclei_val / "images").glob("*.tif"))[0])
    inference = InferenceConfig(device="cpu")
    expected = segment_array(image, original, inference=inference).labels
    got = segment_array(image, imported, inference=inference).labels
    assert expected.max() > 3, "the image has nuclei"
    np.testing.assert_array_equal(got, expected)


def test_fine_tuned_version_exports_its_lineage_and_imports_into_the_store(tmp_path, private_model_dir):
    parent = load_model(bundled_model_path("phase-cells"))
    child = load_model(bundled_model_path("phase-cells"))
    with torch.no_grad():
        child.network.head.bias.add_(0.01)  # stands in for fine-tuning
    child.provenance = {
        "parent": parent.name,
        "parent_hash": parent.weights_hash(),
        "parent_source": parent.source,
        "images": [{"name": "plate1.tif", "sha256": "ab" * 32}],
        "steps": 40,
        "date": "2026-01-02T03:04:05+00:00",
    }
    version = save_version(child)
    plane = np.random.default_rng(0).normal(100, 10, (300, 620)).astype(np.float32)
    package = export_package(
        load_model(version.path), tmp_path / "tuned.zip", test_image=plane, authors=["A. Person"]
    )
    with zipfile.ZipFile(package) as archive:
        test_input = np.load(io.BytesIO(archive.read("test_input.npy")))
        cover = iio.imread(archive.read("cover.png"), extension=".png")
    assert test_input.shape == (1, 1, 300, 512), "a centred crop of at most 512 x 512"
    np.testing.assert_array_equal(test_input[0, 0], plane[:, 54:566])
    assert cover.shape == (256, 874, 3), "covers are kept small (bioimage.io asks for < 500 kB)"
    with pytest.raises(ValueError, match="at least 230 x 230 pixels"):
        export_package(load_model(version.path), tmp_path / "small.zip", test_image=plane[:229])

    rdf = rdf_of(package)
    assert rdf["parent"] == {"id": "phase-cells"}
    assert rdf["authors"] == [{"name": "A. Person"}]
    assert (
        "plate1.tif" not in str(rdf["training_data"]) and "1 image(s)" in rdf["training_data"]["description"]
    )
    lineage = rdf["config"]["napari_unet"]["provenance"]
    assert lineage["parent_hash"] == parent.weights_hash() and lineage["images"][0]["name"] == "plate1.tif"
    assert "parent_source" not in lineage, "local paths stay local"
    assert validate_package(package).status == "valid-format"

    stored = import_model(package)
    assert stored.name == "phase-cells-v2", "arrives beside the local versions, never over them"
    loaded = load_model(stored.path)
    assert loaded.weights_hash() == child.weights_hash()
    assert loaded.provenance["parent_hash"] == parent.weights_hash()
    assert loaded.provenance["imported_from"] == str(package)


class _TouchFile:
    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (os.system, (f"touch {self.target}",))


def test_malicious_weights_inside_a_package_never_run(nuclei_package, tmp_path):
    marker = tmp_path / "pwned"
    evil = io.BytesIO()
    torch.save({"stem.0.weight": _TouchFile(marker)}, evil, pickle_module=pickle)
    evil_bytes = evil.getvalue()
    rdf = rdf_of(nuclei_package)
    rdf["weights"]["pytorch_state_dict"]["sha256"] = hashlib.sha256(
        evil_bytes
    ).hexdigest()  # hash "fixed" too
    package = rewrite(nuclei_package, tmp_path / "evil.zip", rdf=rdf, files={"weights.pt": evil_bytes})
    with pytest.raises(ModelFileError, match=r"evil\.zip!weights\.pt: refused to load"):
        load_model(package)
    assert not marker.exists()


def test_altered_or_foreign_packages_are_refused_with_one_line(nuclei_package, tmp_path):
    with zipfile.ZipFile(nuclei_package) as archive:
        weights = bytearray(archive.read("weights.pt"))
    weights[-100] ^= 0xFF
    altered = rewrite(nuclei_package, tmp_path / "altered.zip", files={"weights.pt": bytes(weights)})
    with pytest.raises(ModelFileError, match="does not match its SHA-256"):
        load_model(altered)

    rdf = rdf_of(nuclei_package)
    del rdf["weights"]["pytorch_state_dict"]
    torchscript_only = rewrite(nuclei_package, tmp_path / "ts.zip", rdf=rdf)
    with pytest.raises(ModelFileError, match="only pytorch_state_dict weights .*has: torchscript"):
        load_model(torchscript_only)

    rdf = rdf_of(nuclei_package)
    del rdf["config"]["napari_unet"]
    foreign = rewrite(nuclei_package, tmp_path / "foreign.zip", rdf=rdf)
    with pytest.raises(ModelFileError, match="not a napari-unet U-Net"):
        load_model(foreign)

    rdf = rdf_of(nuclei_package)
    rdf["config"]["napari_unet"]["model"]["base_width"] = 8
    misfit = rewrite(nuclei_package, tmp_path / "misfit.zip", rdf=rdf)
    with pytest.raises(ModelFileError, match="weights do not match the architecture"):
        load_model(misfit)


def test_the_network_outputs_are_the_models_probabilities():
    bundle = load_model(bundled_model_path("nuclei"))
    image = np.random.default_rng(0).normal(100, 10, (1, 32, 48)).astype(np.float32)
    outputs = network_outputs(bundle, image)
    assert outputs.shape == (3, 32, 48) and outputs.dtype == np.float32


def test_export_without_bioimageio_spec_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "bioimageio.spec", None)  # import fails as if not installed
    with pytest.raises(BioimageioUnavailable, match=r"pip install 'napari-unet\[bioimageio\]'"):
        export_package(load_model(bundled_model_path("nuclei")), tmp_path / "x.zip")
    assert not (tmp_path / "x.zip").exists()
