from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.batch.local import segment_files
from napari_unet.core.config import InferenceConfig
from napari_unet.core.io.label_files import LabelFile, read_label_file, write_label_file
from napari_unet.core.io.stacks import LabelStackWriter, PixelSize
from napari_unet.core.models.registry import bundled_model_path, load_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import Segmenter


@pytest.fixture(scope="module")
def segmented(nuclei_val, tmp_path_factory) -> tuple[Path, Path]:
    """A real image with a 0.5 µm pixel size, and the label file ``segment`` wrote for it."""
    folder = tmp_path_factory.mktemp("segmented")
    image = tifffile.imread(sorted((nuclei_val / "images").glob("*.tif"))[0])
    source = folder / "cells.tif"
    tifffile.imwrite(source, image, resolution=(2e4, 2e4), resolutionunit=tifffile.RESUNIT.CENTIMETER)
    segmenter = Segmenter(load_model(bundled_model_path("nuclei")), InferenceConfig(device="cpu"))
    [result] = run(segment_files([source], folder / "labels", segmenter))
    assert result.status == "done"
    return source, result.output


def test_a_segment_output_reads_with_its_provenance_and_pixel_size(segmented):
    _, output = segmented
    contents = read_label_file(output)
    np.testing.assert_array_equal(contents.labels, tifffile.imread(output))
    assert contents.axes == "YX" and contents.labels.max() > 3
    assert contents.pixel_size == PixelSize(0.5, 0.5)
    assert contents.provenance["model"] == "nuclei" and Path(contents.provenance["input"]).name == "cells.tif"
    assert contents.provenance["objects"] == len(np.unique(contents.labels)) - 1
    assert not {"shape", "axes", "format", "pixel_size"} & set(contents.provenance)


def test_other_tiffs_are_not_label_files(segmented, tmp_path):
    source, _ = segmented
    assert read_label_file(source) is None, "an image"
    plain = tmp_path / "plain_labels.tif"
    tifffile.imwrite(plain, np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert read_label_file(plain) is None, "labels without napari-unet's metadata"


@pytest.mark.parametrize(
    ("top", "dtype"), [(0, np.uint8), (255, np.uint8), (256, np.uint16), (70_000, np.uint32)]
)
def test_written_in_the_smallest_type_that_holds_the_ids(top, dtype, tmp_path):
    labels = np.zeros((2, 5, 6), np.int64)
    labels[1, 2, 3] = top
    labels[0, 0, :2] = 1 if top else 0
    provenance = {"model": {"name": "nuclei"}, "objects": 99, "note": "corrected by hand"}
    path = write_label_file(
        tmp_path / "out.tif", LabelFile(labels, "ZYX", provenance, PixelSize(0.3, 0.3, 2.0))
    )

    assert tifffile.imread(path).dtype == dtype
    back = read_label_file(path)
    np.testing.assert_array_equal(back.labels, labels)
    assert back.labels.dtype == dtype and back.axes == "ZYX"
    assert back.pixel_size == PixelSize(0.3, 0.3, 2.0)
    objects = len(np.unique(labels)) - 1
    assert back.provenance == {"model": {"name": "nuclei"}, "note": "corrected by hand", "objects": objects}
    assert provenance["objects"] == 99, "the caller's record is left as it is"


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.full((4, 4), -1), "must not be negative"),
        (np.full((4, 4), 0.5), "must be integers"),
        (np.full((4, 4), 2**32, np.int64), "does not fit in uint32"),
        (np.zeros(4, np.uint8), "do not fit axes"),
    ],
)
def test_labels_that_cannot_be_written_say_why(labels, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        write_label_file(tmp_path / "bad.tif", LabelFile(labels, "YX"))
    assert list(tmp_path.iterdir()) == [], "nothing is left behind"


def test_a_stack_writer_widens_only_as_far_as_needed(tmp_path):
    with LabelStackWriter(tmp_path / "w.tif", (3, 4, 4), "ZYX", dtype=np.uint8) as writer:
        for top in (7, 300, 9):
            writer.write(np.full((4, 4), top))
    stored = tifffile.imread(tmp_path / "w.tif")
    assert stored.dtype == np.uint16, "uint8 widened to uint16 for 300, not to uint32"
    np.testing.assert_array_equal(stored[:, 0, 0], [7, 300, 9])
    with pytest.raises(ValueError, match="uint8, uint16 or uint32"):
        LabelStackWriter(tmp_path / "x.tif", (4, 4), "YX", dtype=np.int32)
