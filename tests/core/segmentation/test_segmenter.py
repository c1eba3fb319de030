from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import torch
import zarr
from scipy import ndimage as ndi

from napari_unet.core.config import InferenceConfig, ModelConfig, PostprocessConfig, PreprocessConfig
from napari_unet.core.evaluation.metrics import average_precision
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.network import UNet
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import (
    PlaneOutputs,
    Segmentation,
    Segmenter,
    inference_network,
    segment_array,
)
from napari_unet.core.training.targets import head_targets
from tests.helpers import tiny_bundle


def blobs(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 1000).astype(np.uint16)


@pytest.mark.parametrize(
    ("shape", "axes", "expected_axes", "label_shape"),
    [
        ((40, 30), None, "YX", (40, 30)),
        ((2, 40, 30), "CYX", "CYX", (40, 30)),
        ((40, 30, 3), None, "YXC", (40, 30)),
        ((40, 30, 4), None, "YXC", (40, 30)),
        ((3, 40, 30), None, "ZYX", (3, 40, 30)),
        ((3, 40, 30), "TYX", "TYX", (3, 40, 30)),
        ((2, 3, 40, 30), None, "TZYX", (2, 3, 40, 30)),
        ((2, 2, 3, 40, 30), "TZCYX", "TZCYX", (2, 2, 40, 30)),
        ((2, 40, 30, 3), None, "ZYXC", (2, 40, 30)),
        ((40, 2, 30), "YCX", "YCX", (40, 30)),
        ((40, 30, 2), "YXZ", "YXZ", (40, 30, 2)),
    ],
)
def test_every_axes_layout_gives_labels_of_the_spatial_shape(
    shape: tuple[int, ...], axes: str | None, expected_axes: str, label_shape: tuple[int, ...]
) -> None:
    result = segment_array(blobs(shape), tiny_bundle(), axes=axes, inference=InferenceConfig(device="cpu"))
    assert result.axes == expected_axes
    assert result.labels.shape == label_shape
    assert result.labels.dtype == np.int32
    assert result.device == "cpu"


class OracleSegmenter(Segmenter):
    """Replaces the network by perfect outputs for bright squares, to test the stack logic."""

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([head_targets(ndi.label(image[0] > 0.5)[0]) for image in batch])


def test_planes_get_distinct_ids_unless_stitched() -> None:
    plane = np.zeros((64, 64), np.float32)
    plane[20:40, 20:40] = 1.0
    stack = np.stack([plane, plane])
    segmenter = OracleSegmenter(tiny_bundle(), InferenceConfig(device="cpu"))
    apart = _run_segment(segmenter, stack)
    joined = run(segmenter.segment(stack, stitch=True))
    assert apart.labels[0, 30, 30] > 0 and apart.labels[1, 30, 30] > 0
    assert apart.labels[0, 30, 30] != apart.labels[1, 30, 30]
    assert joined.labels[0, 30, 30] == joined.labels[1, 30, 30]


def test_diameter_zero_estimates_the_size_and_a_positive_one_is_used() -> None:
    """As Cellpose's diameter: 0 (or None) estimates it from the image; a positive number is used as given."""
    image = np.zeros((160, 160), np.float32)
    for y in range(10, 150, 35):
        for x in range(10, 150, 35):
            image[y : y + 20, x : x + 20] = 1.0
    torch.manual_seed(0)
    bundle = ModelBundle(
        network=UNet(ModelConfig(base_width=4, depth=2)).eval(),
        preprocess=PreprocessConfig(object_diameter=24.0),
        postprocess=PostprocessConfig(min_size=0),
        name="tiny-rescaling",
    )
    square = np.sqrt(4 * 400 / np.pi)  # equivalent-circle diameter of a 20 x 20 square
    for estimate in (None, 0):
        result = run(OracleSegmenter(bundle, InferenceConfig(device="cpu", diameter=estimate)).segment(image))
        assert result.diameter == pytest.approx(square, rel=0.1)
        assert result.labels.max() == 16
    given = OracleSegmenter(bundle, InferenceConfig(device="cpu", diameter=48.0))
    result = run(given.segment(image, keep_outputs=True))
    assert result.diameter == 48.0 and result.outputs[()].scale == 0.5
    assert result.labels.max() == 16


def test_lazy_arrays_match_numpy(tmp_path: Path) -> None:
    image = blobs((3, 48, 40))
    bundle = tiny_bundle()
    config = InferenceConfig(device="cpu")
    expected = segment_array(image, bundle, inference=config).labels
    dask_image = da.from_array(image, chunks=(1, 48, 40))
    zarr_image = zarr.array(image, chunks=(1, 48, 40))
    tifffile.imwrite(tmp_path / "stack.tif", image, photometric="minisblack")
    memmap = tifffile.memmap(tmp_path / "stack.tif")
    for lazy in (dask_image, zarr_image, memmap):
        np.testing.assert_array_equal(segment_array(lazy, bundle, inference=config).labels, expected)


def test_progress_is_reported_and_stopping_early_leaves_no_result() -> None:
    segmenter = Segmenter(tiny_bundle(), InferenceConfig(device="cpu", tile_size=32, tile_overlap=8))
    job = segmenter.segment(blobs((2, 100, 100)), axes="ZYX")
    records = [next(job) for _ in range(3)]
    assert all(0 <= r.step <= r.total for r in records)
    job.close()  # cancel between steps
    with pytest.raises(StopIteration):
        next(job)


@pytest.mark.slow
def test_tiled_equals_untiled_on_a_real_image(nuclei_val: Path) -> None:
    """Default tiles blended over their overlap (64 px) agree with one whole-image pass.

    Zero padding at tile borders changes the network's output within its
    receptive field (~200 px for 4 poolings); linear ramps over the overlap
    suppress most of that.  Measured on the largest validation image
    (603 x 1272, float32, two tiles of 608 x 672): max |dp| 0.057, mean 2e-5,
    the same labels.  (Tiles of 512: max 0.19, mean 9e-5, 1 of 298 objects differs.)
    """
    path = max(sorted((nuclei_val / "images").glob("*.tif")), key=lambda p: tifffile.imread(p).size)
    image = tifffile.imread(path)
    bundle = load_model(resolve_model("nuclei"))
    whole = Segmenter(bundle, InferenceConfig(device="cpu", tile_size=4096, amp=False))
    tiled = Segmenter(bundle, InferenceConfig(device="cpu", amp=False))
    normalised = whole.normalise(image[None])
    p_whole = run(whole.predict_normalised(normalised))
    p_tiled = run(tiled.predict_normalised(normalised))
    assert max(image.shape) > tiled.inference.tile_size  # really tiled
    difference = np.abs(p_whole - p_tiled)
    assert difference.max() < 0.1
    assert difference.mean() < 1e-4
    labels_whole = whole.labels(PlaneOutputs(p_whole, 1.0))
    labels_tiled = whole.labels(PlaneOutputs(p_tiled, 1.0))
    assert average_precision(labels_whole, labels_tiled, thresholds=[0.9])[0] > 0.98


@pytest.mark.slow
def test_mixed_precision_keeps_the_labels_of_float32(nuclei_val: Path) -> None:
    """bf16 autocast on CPU: the same objects as float32 on a real image (measured AP@0.5 0.99)."""
    path = max(sorted((nuclei_val / "images").glob("*.tif")), key=lambda p: tifffile.imread(p).size)
    image = tifffile.imread(path)
    bundle = load_model(resolve_model("nuclei"))
    labels = {}
    for amp in (False, True):
        config = InferenceConfig(device="cpu", diameter=bundle.preprocess.object_diameter, amp=amp)
        segmenter = Segmenter(bundle, config)  # at the model's scale: no size estimate
        assert segmenter.amp is amp
        labels[amp] = _run_segment(segmenter, image).labels
    assert average_precision(labels[False], labels[True], thresholds=[0.5])[0] > 0.97


def test_inference_network_folds_batch_norm_and_leaves_the_model_alone() -> None:
    torch.manual_seed(0)
    network = UNet(ModelConfig(base_width=8, depth=2))
    for module in network.modules():  # non-trivial statistics, as after training
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
    network.eval()
    folded = inference_network(network)
    x = torch.randn(2, 1, 48, 40)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), network(x), atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in network.modules()) == 10


class OneWorker(Segmenter):
    def _tile_workers(self) -> int:
        return 1


def test_tiles_in_parallel_match_one_at_a_time_and_restore_torch_threads() -> None:
    bundle = tiny_bundle()
    image = np.random.default_rng(0).random((1, 150, 130)).astype(np.float32)
    config = InferenceConfig(device="cpu", tile_size=32, tile_overlap=8, amp=False)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = Segmenter(bundle, config)
        assert parallel._tile_workers() == 2
        expected = run(OneWorker(bundle, config).predict_normalised(image))
        np.testing.assert_allclose(run(parallel.predict_normalised(image)), expected, atol=1e-5)
        assert torch.get_num_threads() == 2
        stopped = parallel.predict_normalised(image)
        next(stopped), next(stopped)
        stopped.close()  # cancelled with tiles queued and running
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def test_result_type_and_reported_device() -> None:
    segmenter = Segmenter(tiny_bundle(), InferenceConfig(device="auto"))
    result = _run_segment(segmenter, blobs((32, 32)))
    assert isinstance(result, Segmentation)
    assert result.device == str(segmenter.device)


def _run_segment(segmenter: Segmenter, image: np.ndarray) -> Segmentation:
    return run(segmenter.segment(image))


@pytest.mark.slow
def test_size_estimate_is_the_same_on_one_thread_and_on_two(nuclei_val: Path) -> None:
    """The two starting scales run in parallel on several threads; the estimate must not change."""
    image = tifffile.imread(sorted((nuclei_val / "images").glob("*.tif"))[2])
    segmenter = Segmenter(load_model(resolve_model("nuclei")), InferenceConfig(device="cpu", amp=False))
    normalised = segmenter.normalise(image[None])
    threads = torch.get_num_threads()
    try:
        estimates = []
        for count in (1, 2):
            torch.set_num_threads(count)
            estimates.append(segmenter.estimate_diameter(normalised))
            assert torch.get_num_threads() == count
    finally:
        torch.set_num_threads(threads)
    assert estimates[0] is not None
    assert estimates[0] == pytest.approx(estimates[1], rel=1e-3)


def test_augmented_outputs_follow_the_image_when_it_is_flipped() -> None:
    """Averaging over the flip group makes the outputs flip with the image (a plain pass does not quite)."""
    bundle = tiny_bundle()
    image = blobs((1, 96, 128)).astype(np.float32)
    flipped = np.ascontiguousarray(image[:, ::-1])
    plain = Segmenter(bundle, InferenceConfig(device="cpu", amp=False, tile_size=64, tile_overlap=16))
    augmented = Segmenter(bundle, InferenceConfig(device="cpu", amp=False, augment=True))
    out = run(augmented.predict_normalised(image, augment=True))
    np.testing.assert_allclose(
        run(augmented.predict_normalised(flipped, augment=True))[:, ::-1], out, atol=1e-5
    )
    assert not np.allclose(run(plain.predict_normalised(image)), out, atol=1e-5)
    # tiled: each tile is averaged over its flips, then the tiles are blended as usual (the tiny
    # network's receptive field is small, so tiles barely change its outputs)
    tiled = run(plain.predict_normalised(image, augment=True))
    assert np.abs(tiled - out).max() < 0.05 and np.abs(tiled - out).mean() < 1e-3
    assert not np.allclose(tiled, run(plain.predict_normalised(image)), atol=1e-5)
