"""The Python API (napari_unet.load_model / segment / fine_tune / evaluate / save_model) on real images."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import napari_unet
from napari_unet.core.evaluation.metrics import average_precision
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.files import ModelBundle, ModelFileError
from napari_unet.core.training.folders import FROM_MODEL_PRESET

Pairs = list[tuple[str, np.ndarray, np.ndarray]]


@pytest.fixture(scope="module")
def val_pairs(nuclei_val: Path) -> Pairs:
    pairs = read_labelled_folder(nuclei_val / "images", nuclei_val / "labels")
    small = [pair for pair in pairs if pair[1].shape == (256, 256)]
    assert len(small) >= 3
    return small[:3]


@pytest.fixture(scope="module")
def nuclei() -> ModelBundle:
    return napari_unet.load_model("nuclei")


def test_the_api_is_imported_on_first_use_only() -> None:
    code = (
        "import sys, napari_unet\n"
        "assert 'torch' not in sys.modules and 'napari_unet.api' not in sys.modules\n"
        "assert 'segment' in dir(napari_unet)\n"
        "from napari_unet import segment\n"
        "import napari_unet.api\n"
        "assert segment is napari_unet.api.segment and 'torch' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(AttributeError, match="no attribute 'segmnet'"):
        napari_unet.segmnet  # noqa: B018


def test_load_model_by_name_and_a_clear_error_for_an_unknown_one(nuclei: ModelBundle) -> None:
    assert nuclei.name == "nuclei"
    assert nuclei.config.heads
    with pytest.raises(ModelFileError, match="no-such-model: no such model"):
        napari_unet.load_model("no-such-model")


def test_segment_finds_the_nuclei_of_real_images(val_pairs: Pairs, nuclei: ModelBundle) -> None:
    predictions = []
    for _, image, _ in val_pairs:
        labels = napari_unet.segment(image, nuclei)
        assert labels.shape == image.shape and labels.dtype == np.int32
        predictions.append(labels)
    ap50 = average_precision([truth for _, _, truth in val_pairs], predictions)[0]
    assert ap50 > 0.7


def test_a_stack_is_segmented_plane_by_plane_or_stitched(val_pairs: Pairs, nuclei: ModelBundle) -> None:
    image = val_pairs[0][1]
    plane = napari_unet.segment(image, nuclei, diameter=20)
    objects = len(np.unique(plane)) - 1
    assert objects > 10
    stack = np.stack([image, image])
    apart = napari_unet.segment(stack, nuclei, axes="ZYX", diameter=20)
    assert apart.shape == stack.shape
    assert len(np.unique(apart)) - 1 == 2 * objects  # each plane's objects have their own ids
    assert np.array_equal(apart[1] > 0, plane > 0)
    joined = napari_unet.segment(stack, nuclei, axes="ZYX", diameter=20, stitch=True)
    assert len(np.unique(joined)) - 1 == objects
    assert np.array_equal(joined[0], joined[1])


@pytest.mark.slow
def test_post_processing_settings_override_the_model_defaults(val_pairs: Pairs, nuclei: ModelBundle) -> None:
    image = val_pairs[1][1]
    default = napari_unet.segment(image, nuclei, diameter=20)
    every_object = napari_unet.segment(image, nuclei, diameter=20, object_probability=0.0)
    nothing_foreground = napari_unet.segment(image, nuclei, diameter=20, probability=0.999999)
    assert len(np.unique(every_object)) >= len(np.unique(default))
    assert nothing_foreground.max() < default.max()
    with pytest.raises(ValueError, match="seed_threshold"):
        napari_unet.segment(image, nuclei, seed_threshold=1.5)


@pytest.mark.slow
def test_evaluate_scores_a_model_against_its_own_labels_as_perfect(
    val_pairs: Pairs, nuclei: ModelBundle
) -> None:
    images = [image for _, image, _ in val_pairs[:2]]
    own = [napari_unet.segment(image, nuclei) for image in images]
    perfect = napari_unet.evaluate(nuclei, images, own)
    assert perfect["ap50"] == pytest.approx(1.0)
    assert perfect["adapted_rand_error"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["images"] == 2
    truth = napari_unet.evaluate("nuclei", images, [labels for _, _, labels in val_pairs[:2]])
    assert 0.5 < truth["ap50"] < 1.0
    assert set(truth) == {"ap50", "ap75", "ap50_95", "foreground_iou", "adapted_rand_error", "images"}


def test_images_and_labels_must_pair_up(val_pairs: Pairs, nuclei: ModelBundle) -> None:
    _, image, labels = val_pairs[0]
    with pytest.raises(ValueError, match="2 images but 1 label images"):
        napari_unet.evaluate(nuclei, [image, image], [labels])
    with pytest.raises(ValueError, match=r"image 0: shape \(256, 200\) does not match its labels"):
        napari_unet.fine_tune(nuclei, [image[:, :200]], [labels], steps=1)
    with pytest.raises(ValueError, match="need a 2-D integer array"):
        napari_unet.evaluate(nuclei, [image], [labels.astype(np.float32)])


def test_fine_tune_returns_a_new_version_and_save_model_stores_it(
    val_pairs: Pairs, nuclei: ModelBundle, private_model_dir: Path, tmp_path: Path
) -> None:
    parent_hash = nuclei.weights_hash()
    images = np.stack([image for _, image, _ in val_pairs[:2]])  # one (N, Y, X) array
    labels = np.stack([truth for _, _, truth in val_pairs[:2]])
    losses: list[float] = []
    tuned = napari_unet.fine_tune(
        nuclei,
        images,
        labels,
        steps=4,
        batch_size=2,
        crop_size=64,
        progress=lambda record: losses.append(record.metrics["loss"]),
    )
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert nuclei.weights_hash() == parent_hash  # the parent is untouched
    assert tuned.weights_hash() != parent_hash
    assert tuned.provenance["parent"] == "nuclei" and tuned.provenance["parent_hash"] == parent_hash
    settings = tuned.provenance["training"]
    assert tuned.provenance["steps"] == 4 and settings["freeze_norm"] is True
    assert settings["learning_rate"] == FROM_MODEL_PRESET.learning_rate  # the CLI's train --from defaults
    assert [record["name"] for record in tuned.provenance["images"]] == ["image 0", "image 1"]

    stored = napari_unet.save_model(tuned)
    assert stored == private_model_dir / "nuclei-v1.pt" and tuned.name == "nuclei-v1"
    assert napari_unet.load_model("nuclei-v1").weights_hash() == tuned.weights_hash()
    as_file = napari_unet.save_model(tuned, tmp_path / "mine.pt")
    assert napari_unet.load_model(as_file).weights_hash() == tuned.weights_hash()


def test_a_colour_image_in_yxc_order_is_accepted(val_pairs: Pairs, nuclei: ModelBundle) -> None:
    _, image, labels = val_pairs[0]
    colour = np.stack([image] * 3, axis=-1)
    scores = napari_unet.evaluate(nuclei, [colour], [labels], diameter=20)
    grey = napari_unet.evaluate(nuclei, [image], [labels], diameter=20)
    assert scores["ap50"] == pytest.approx(grey["ap50"], abs=0.05)


@pytest.mark.slow
def test_fine_tuning_on_a_new_modality_lowers_the_loss_and_raises_accuracy(
    data_folder: Callable[[str], Path],
) -> None:
    folder = data_folder("cells-usiigaci/train")
    pairs = read_labelled_folder(folder / "images", folder / "labels", "set1[34].tif")
    # 512² corners and small crops keep this to about a minute on two cores
    images = [image[:512, :512] for _, image, _ in pairs]
    labels = [truth[:512, :512] for _, _, truth in pairs]
    losses: list[float] = []
    tuned = napari_unet.fine_tune(
        "nuclei",
        images[:1],
        labels[:1],
        steps=60,
        batch_size=4,
        crop_size=128,
        progress=lambda r: losses.append(r.metrics["loss"]),
    )
    assert np.mean(losses[-10:]) < 0.9 * np.mean(losses[:10])
    before = napari_unet.evaluate("nuclei", images[1:], labels[1:], diameter=41)
    after = napari_unet.evaluate(tuned, images[1:], labels[1:], diameter=41)
    assert after["foreground_iou"] > before["foreground_iou"] + 0.1
