from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.batch.local import BatchSettings, FileResult, segment_files
from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.models.lineage import lineage_names
from napari_unet.core.models.registry import BUNDLED_MODELS, bundled_model_path, load_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.domain import (
    BUNDLED_DOMAINS,
    DARK_BACKGROUND,
    background_level,
    blank_notice,
    is_blank,
    is_colour,
    light_hint,
    model_domain,
    size_hint,
)
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


# -- images a model was not made for ----------------------------------------------------------

DATA_KINDS = {  # folder -> dark background (fluorescence)
    "nuclei-dsb2018/train": True,
    "nuclei-dsb2018/val": True,
    "cells-usiigaci/train": False,
    "cells-usiigaci/val": False,
    "em-isbi2012/train": False,
    "nuclei-dsb2018-other/train": False,
    "nuclei-dsb2018-other/val": False,
}


def channels_first(image: np.ndarray) -> np.ndarray:
    """A (Y, X, C) colour image as the (C, Y, X) plane the segmenter reads."""
    return np.moveaxis(image, -1, 0) if image.ndim == 3 else image


@pytest.mark.parametrize(("split", "dark"), DATA_KINDS.items())
def test_fluorescence_is_told_from_transmitted_light_on_every_image(
    data_folder, split: str, dark: bool
) -> None:
    levels = {
        path.name: background_level(channels_first(tifffile.imread(path)))
        for path in sorted((data_folder(split) / "images").glob("*.tif"))
    }
    wrong = {name: level for name, level in levels.items() if (level < DARK_BACKGROUND) != dark}
    assert levels and not wrong, wrong


def test_colour_images_are_told_from_grey_ones(data_folder) -> None:
    images = [
        tifffile.imread(p) for p in sorted((data_folder("nuclei-dsb2018-other/val") / "images").glob("*"))
    ]
    colour = [image for image in images if image.ndim == 3]
    assert colour and all(is_colour(channels_first(image)) for image in colour)
    grey = next(image for image in images if image.ndim == 2)
    assert not is_colour(grey)
    assert not is_colour(np.stack([grey] * 3))  # a grey image saved as RGB


def test_model_domains_follow_names_versions_and_lineage() -> None:
    assert set(BUNDLED_DOMAINS) == set(BUNDLED_MODELS)
    assert model_domain(["nuclei"]).fluorescence
    assert model_domain(["phase-cells-v12"]).family == "phase-cells"
    assert model_domain(["nuclei-brightfield-v2"]).family == "nuclei-brightfield"
    assert not model_domain(["nuclei-brightfield"]).fluorescence
    assert model_domain(["my renamed model", None, "em-membranes-v2"]).family == "em-membranes"
    assert model_domain(["nucleify", "something else"]) is None
    bundle = load_model(bundled_model_path("nuclei"))
    bundle.name, bundle.provenance = "my-nuclei", {"parent": "x", "ancestors": [{"name": "nuclei-v3"}]}
    assert lineage_names(bundle) == ["my-nuclei", "x", "nuclei-v3"]


def test_size_hint_says_how_far_outside_the_trained_sizes() -> None:
    assert size_hint(20.0, "nuclei", (5.0, 200.0)) is None
    assert size_hint(None, "nuclei", (5.0, 200.0)) is None
    assert size_hint(500.0, "em-membranes", None) is None  # it does not rescale: nothing to compare
    assert size_hint(3.3, "nuclei", (5.0, 200.0)) == (
        "Hint: objects here are about 3.3 px across, outside the 5-200 px that nuclei was trained for; "
        "if the estimate is wrong, give the diameter."
    )
    assert size_hint(260.0, "nuclei", (5.0, 200.0), estimated=False).endswith("nuclei was trained for.")


def first_image(data_folder, split: str) -> np.ndarray:
    return tifffile.imread(sorted((data_folder(split) / "images").glob("*.tif"))[0])


def test_segmenting_names_a_better_bundled_model_for_the_kind_of_light(data_folder) -> None:
    nuclei = load_model(bundled_model_path("nuclei"))
    phase = load_model(bundled_model_path("phase-cells"))
    fluorescence = first_image(data_folder, "nuclei-dsb2018/val")
    colour = next(
        tifffile.imread(p)
        for p in sorted((data_folder("nuclei-dsb2018-other/val") / "images").glob("*.tif"))
        if tifffile.imread(p).ndim == 3
    )
    assert segment_array(fluorescence, nuclei, inference=CPU).notices == []
    [hint] = segment_array(colour, nuclei, inference=CPU).notices
    assert hint.startswith("Hint: this is a colour image with a bright background")
    assert hint.endswith("nuclei-brightfield segments nuclei in such images.")
    brightfield = load_model(bundled_model_path("nuclei-brightfield"))
    assert segment_array(colour, brightfield, inference=CPU).notices == []
    [hint] = segment_array(colour, phase, inference=CPU).notices
    assert hint.endswith("nuclei-brightfield segments nuclei in such images.")
    [hint] = segment_array(fluorescence, brightfield, inference=CPU).notices
    assert hint.endswith("nuclei suits fluorescence better.")
    grey = next(
        tifffile.imread(p)
        for p in sorted((data_folder("nuclei-dsb2018-other/val") / "images").glob("*.tif"))
        if tifffile.imread(p).ndim == 2
    )
    hint = light_hint(grey, "nuclei", BUNDLED_DOMAINS["nuclei"])
    assert hint.startswith("Hint: the background is bright")
    assert hint.endswith("nuclei-brightfield suits brightfield nuclei, phase-cells phase-contrast cells.")
    assert light_hint(grey, "nuclei-brightfield", BUNDLED_DOMAINS["nuclei-brightfield"]) is None
    [hint] = segment_array(fluorescence, phase, inference=CPU).notices
    assert "looks like fluorescence" in hint and hint.endswith("nuclei suits fluorescence better.")
    phase_image = first_image(data_folder, "cells-usiigaci/val")
    assert not segment_array(phase_image[:256, :256], phase, inference=CPU).notices


def test_segmenting_says_when_objects_are_smaller_than_the_model_was_trained_for(data_folder) -> None:
    from scipy import ndimage as ndi

    nuclei = load_model(bundled_model_path("nuclei"))
    tiny = ndi.zoom(first_image(data_folder, "nuclei-dsb2018/val").astype(np.float32), 0.2, order=1)
    result = segment_array(tiny, nuclei, inference=CPU)
    [hint] = result.notices
    assert result.diameter < 5 and hint == size_hint(result.diameter, "nuclei", (5.0, 200.0))
    given = segment_array(tiny, nuclei, inference=InferenceConfig(device="cpu", diameter=2.0))
    assert given.notices == [size_hint(2.0, "nuclei", (5.0, 200.0), estimated=False)]


def test_a_batch_file_carries_the_hints(data_folder, tmp_path: Path) -> None:
    source = first_image(data_folder, "nuclei-dsb2018/val")
    tifffile.imwrite(tmp_path / "fluorescence.tif", source)
    segmenter = Segmenter(load_model(bundled_model_path("phase-cells")), CPU)
    [result] = run(segment_files([tmp_path / "fluorescence.tif"], tmp_path / "out", segmenter))
    assert result.status == "done"
    [hint] = result.notices
    assert hint.endswith("nuclei suits fluorescence better.")
