import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from napari_unet.core.config import HEAD_NAMES, PostprocessConfig, PreprocessConfig
from napari_unet.core.segmentation.sizing import (
    SCALE_LIMITS,
    estimate_diameter,
    median_diameter,
    sizing_postprocess,
    working_scale,
)
from napari_unet.core.training.targets import head_targets

MODEL = PreprocessConfig(object_diameter=24.0)


def oracle(image: np.ndarray) -> np.ndarray:
    """Perfect network outputs for bright objects on a dark background, at any scale."""
    return head_targets(ndi.label(image[0] > 0.5)[0])


def squares(size: int, edge: int, spacing: int) -> np.ndarray:
    """A normalised (1, size, size) image of bright squares of ``edge`` pixels."""
    image = np.zeros((1, size, size), np.float32)
    for y in range(spacing // 4, size - edge, spacing):
        for x in range(spacing // 4, size - edge, spacing):
            image[0, y : y + edge, x : x + edge] = 1.0
    return image


def circle_diameter(edge: int) -> float:
    return float(np.sqrt(4 * edge**2 / np.pi))


def test_median_diameter() -> None:
    labels = np.zeros((50, 50), np.int32)
    labels[:10, :10] = 1
    labels[20:30, 20:30] = 2
    assert median_diameter(labels) == np.sqrt(4 * 100 / np.pi)
    assert median_diameter(np.zeros((5, 5), np.int32)) is None


def test_median_diameter_ignores_missing_ids_and_takes_the_median_area() -> None:
    labels = np.zeros((60, 60), np.int32)
    labels[:4, :4] = 2  # 16 px
    labels[10:20, 10:20] = 5  # 100 px
    labels[30:60, 30:60] = 9  # 900 px
    assert median_diameter(labels) == pytest.approx(np.sqrt(4 * 100 / np.pi))


def test_working_scale_brings_objects_to_the_models_size_within_limits() -> None:
    assert working_scale(12.0, MODEL) == 2.0
    assert working_scale(48.0, MODEL) == 0.5
    assert working_scale(1.0, MODEL) == SCALE_LIMITS[1]
    assert working_scale(10_000.0, MODEL) == SCALE_LIMITS[0]
    assert working_scale(None, MODEL) == 1.0  # nothing known: the image as it is
    assert working_scale(12.0, PreprocessConfig(object_diameter=24.0, rescale=False)) == 1.0


def test_objects_are_measured_with_default_thresholds_and_the_models_joining() -> None:
    model = PostprocessConfig(
        foreground_threshold=0.7,
        min_size=300,
        fill_background=True,
        join_threshold=0.8,
        object_probability=0.5,
    )
    measure = sizing_postprocess(model)
    assert measure.fill_background and measure.join_threshold == 0.8
    assert measure.min_size == PostprocessConfig().min_size
    assert measure.foreground_threshold == PostprocessConfig().foreground_threshold
    assert measure.object_probability == 0.0


@pytest.mark.parametrize("edge", [8, 20, 60])
def test_the_estimate_finds_the_objects_size_from_either_starting_scale(edge: int) -> None:
    image = squares(520, edge, 3 * edge)
    found = estimate_diameter(image, oracle, HEAD_NAMES, MODEL, PostprocessConfig())
    assert found == pytest.approx(circle_diameter(edge), rel=0.1)


def test_nothing_to_measure_gives_no_estimate() -> None:
    assert (
        estimate_diameter(np.zeros((1, 64, 64), np.float32), oracle, HEAD_NAMES, MODEL, PostprocessConfig())
        is None
    )


def test_the_estimate_is_the_same_in_parallel_and_restores_torch_threads() -> None:
    image = squares(300, 20, 50)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        serial = estimate_diameter(image, oracle, HEAD_NAMES, MODEL, PostprocessConfig(), parallel=False)
        parallel = estimate_diameter(image, oracle, HEAD_NAMES, MODEL, PostprocessConfig(), parallel=True)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert serial == parallel and serial is not None
