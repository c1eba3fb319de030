from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.batch.local import BatchSettings, FileResult, segment_files
from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.models.registry import BUNDLED_MODELS, bundled_model_path, load_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.domain import blank_notice, is_blank
from napari_unet.core.segmentation.postprocess import plane_labels
from napari_unet.core.segmentation.segmenter import Segmenter, segment_array

CPU = InferenceConfig(device="cpu")


@pytest.mark.parametrize(
    "plane",
    [
        np.zeros((300, 300), np.uint8),
        np.full((40, 50), 7, np.int64),
        np.full((40, 50), -3.5, np.float32),
        np.full((8, 8), True),
        np.full((3, 32, 32), 200, np.uint8),  # one colour
        np.stack([np.full((16, 16), v, np.uint16) for v in (10, 20, 30)]),  # one value a channel
        np.array([[np.nan, 1.0], [np.inf, 1.0]]),  # unreadable pixels count as background
        np.full((4, 4), np.nan),
    ],
)
def test_planes_of_one_value_are_blank(plane: np.ndarray) -> None:
    assert is_blank(plane)


@pytest.mark.parametrize(
    "plane",
    [
        np.eye(8, dtype=np.uint8),
        np.array([[2**40, 2**40 + 1]], np.int64),  # float32 would not tell these apart
        np.stack([np.zeros((8, 8)), np.eye(8)]),  # one channel has structure
        np.array([[np.nan, 0.0], [1.0, 1.0]]),
    ],
)
def test_planes_with_two_values_are_not_blank(plane: np.ndarray) -> None:
    assert not is_blank(plane)


def test_blank_notice_says_how_many_planes() -> None:
    assert blank_notice(0, 1) is None
    assert blank_notice(1, 1) == "The image is blank (constant): no objects."
    assert blank_notice(4, 4) == "All 4 planes are blank (constant): no objects."
    assert blank_notice(1, 3) == "1 of 3 planes is blank (constant): no objects there."
    assert blank_notice(2, 3) == "2 of 3 planes are blank (constant): no objects there."


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_every_bundled_model_finds_nothing_in_a_blank_image(name: str) -> None:
    """em-membranes fills the background: a blank image used to come out as one object."""
    result = segment_array(
        np.zeros((300, 300), np.uint8), load_model(bundled_model_path(name)), inference=CPU
    )
    assert not result.labels.any()
    assert result.notices == ["The image is blank (constant): no objects."]


def test_blank_planes_of_a_stack_stay_empty_and_are_counted(nuclei_val: Path) -> None:
    image = tifffile.imread(sorted((nuclei_val / "images").glob("*.tif"))[0])
    plane = (image if image.ndim == 2 else image[..., 0])[:128, :128]
    stack = np.stack([plane, np.full_like(plane, plane.max()), plane])
    segmenter = Segmenter(load_model(bundled_model_path("nuclei")), CPU)
    result = run(segmenter.segment(stack, axes="ZYX", keep_outputs=True))
    assert result.labels[0].any() and result.labels[2].any()
    assert not result.labels[1].any()
    assert result.notices == ["1 of 3 planes is blank (constant): no objects there."]
    # moving a post-processing control (re-labelling cached outputs) keeps it empty
    filling = PostprocessConfig(foreground_threshold=0.05, min_size=0, fill_background=True)
    assert result.outputs[(1,)].blank
    assert not plane_labels(result.outputs[(1,)], segmenter.heads, filling).any()
    assert plane_labels(result.outputs[(0,)], segmenter.heads, filling).any()


def test_a_blank_file_in_a_batch_is_done_with_a_notice(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "blank.tif", np.zeros((300, 300), np.uint8))
    segmenter = Segmenter(load_model(bundled_model_path("em-membranes")), CPU)
    [result] = run(segment_files([tmp_path / "blank.tif"], tmp_path / "out", segmenter, BatchSettings()))
    assert isinstance(result, FileResult) and result.status == "done"
    assert result.objects == 0 and not tifffile.imread(tmp_path / "out" / "blank.tif").any()
    assert result.notices == ("The image is blank (constant): no objects.",)
