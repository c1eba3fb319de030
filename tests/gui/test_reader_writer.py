"""The plugin's npe2 reader and writer, through npe2 and through a viewer, on a real segmentation."""

from __future__ import annotations

from pathlib import Path

import npe2
import numpy as np
import pytest
import tifffile
from napari.layers import Labels

from napari_unet.core.batch.local import segment_files
from napari_unet.core.config import InferenceConfig
from napari_unet.core.models.registry import load_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import Segmenter
from napari_unet.gui.reader import get_reader


@pytest.fixture(autouse=True)
def installed_plugins() -> None:
    """What napari does at start: find the installed plugins' manifests (this one's included)."""
    npe2.PluginManager.instance().discover()


@pytest.fixture
def label_file(nuclei_image, model_path, tmp_path) -> Path:
    """What ``napari-unet segment`` writes for a 3-plane stack with 2 µm Z spacing and 0.5 µm pixels."""
    stack = np.stack([nuclei_image, np.flip(nuclei_image, 0), np.flip(nuclei_image, 1)])
    source = tmp_path / "stack.tif"
    tifffile.imwrite(
        source,
        stack,
        imagej=True,
        resolution=(2.0, 2.0),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
    )
    segmenter = Segmenter(load_model(model_path), InferenceConfig(device="cpu"))
    [result] = run(segment_files([source], tmp_path / "labels", segmenter))
    assert result.status == "done"
    return result.output


def test_npe2_reads_a_label_file_as_labels_with_provenance_and_scale(label_file):
    [(data, attributes, layer_type)] = npe2.read([label_file], stack=False, plugin_name="napari-unet")
    assert layer_type == "labels"
    np.testing.assert_array_equal(data, tifffile.imread(label_file))
    assert data.shape == (3, 256, 256) and data.max() > 3
    provenance = attributes["metadata"]["provenance"]
    assert provenance["model"] == "nuclei" and Path(provenance["input"]).name == "stack.tif"
    assert provenance["objects"] == len(np.unique(data)) - 1
    assert attributes["metadata"]["axes"] == "ZYX"
    assert attributes["scale"] == pytest.approx((2.0, 0.5, 0.5))
    assert attributes["units"] == ("micrometer",) * 3
    assert attributes["name"] == "stack"


def test_other_tiffs_are_left_to_napari(label_file, tmp_path):
    image = tmp_path / "image.tif"
    tifffile.imwrite(image, np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    assert get_reader(str(image)) is None
    with pytest.raises(ValueError, match="refused the file"):
        npe2.read([image], stack=False, plugin_name="napari-unet")
    [layer_data] = npe2.read([image], stack=False, plugin_name="napari")  # napari's own reader
    assert layer_data[0].shape == (64, 64)
    assert len(layer_data) < 3 or layer_data[2] == "image", "a data tuple without a type is an image"
    assert get_reader([str(label_file), str(image)]) is None, "a mix is not ours to open"


def test_npe2_write_round_trips_a_labels_layer_exactly(label_file, tmp_path):
    [(data, attributes, _)] = npe2.read([label_file], stack=False, plugin_name="napari-unet")
    layer = Labels(data, **attributes)
    layer.data_setitem((np.array([1]), np.array([5]), np.array([7])), 300)  # a correction: ids above 255

    written = npe2.write(tmp_path / "saved.tif", [layer], plugin_name="napari-unet")
    assert written == [str(tmp_path / "saved.tif")]
    assert tifffile.imread(written[0]).dtype == np.uint16, "the smallest type that holds 300"

    [(back, back_attributes, layer_type)] = npe2.read(written, stack=False, plugin_name="napari-unet")
    assert layer_type == "labels"
    np.testing.assert_array_equal(back, layer.data)
    assert back_attributes["scale"] == pytest.approx(tuple(layer.scale))
    assert back_attributes["units"] == attributes["units"]
    kept = {k: v for k, v in back_attributes["metadata"]["provenance"].items() if k != "objects"}
    assert kept == {k: v for k, v in attributes["metadata"]["provenance"].items() if k != "objects"}
    assert back_attributes["metadata"]["provenance"]["objects"] == len(np.unique(layer.data)) - 1
    with tifffile.TiffFile(written[0]) as tiff:  # ImageJ and Fiji read the pixel size from these tags
        assert tiff.pages.first.tags["XResolution"].value == (20000, 1)
        assert tiff.pages.first.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER


def test_a_new_labels_layer_saves_in_uint8_and_opens_again(tmp_path):
    layer = Labels(np.zeros((40, 50), np.int32), name="drawn")
    layer.data_setitem((np.arange(10, 20), np.arange(10, 20)), 3)
    [path] = npe2.write(tmp_path / "drawn.tif", [layer], plugin_name="napari-unet")
    assert tifffile.imread(path).dtype == np.uint8
    [(back, attributes, _)] = npe2.read([path], stack=False, plugin_name="napari-unet")
    np.testing.assert_array_equal(back, layer.data)
    assert attributes["metadata"] == {"provenance": {"objects": 1}, "axes": "YX"}
    assert "scale" not in attributes, "no pixel size was known"


def test_a_layer_that_cannot_be_saved_says_which_and_why(tmp_path):
    layer = Labels(np.zeros((4, 4), np.int64), name="wide")
    layer.data_setitem((np.array([0]), np.array([0])), 2**33)
    with pytest.raises(ValueError, match=r"layer 'wide': .*does not fit in uint32"):
        npe2.write(tmp_path / "wide.tif", [layer], plugin_name="napari-unet")
    assert not (tmp_path / "wide.tif").exists()


def test_a_person_opens_the_file_in_napari_and_saves_the_layer(make_napari_viewer, label_file, tmp_path):
    viewer = make_napari_viewer()
    [layer] = viewer.open(label_file, plugin="napari-unet")
    assert isinstance(layer, Labels) and layer.metadata["provenance"]["model"] == "nuclei"
    assert tuple(layer.scale) == pytest.approx((2.0, 0.5, 0.5))
    label = int(layer.data[1].max())
    layer.brush_size = 5
    layer.paint((1, *np.argwhere(layer.data[1] == label)[0]), 0)  # a correction: erase part of an object
    assert (layer.data != tifffile.imread(label_file)).any()
    [saved] = viewer.layers.save(str(tmp_path / "corrected.tif"), selected=True, plugin="napari-unet")
    [(back, attributes, _)] = npe2.read([saved], stack=False, plugin_name="napari-unet")
    np.testing.assert_array_equal(back, layer.data)
    assert attributes["metadata"]["provenance"]["model_hash"] == layer.metadata["provenance"]["model_hash"]
