from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.network import UNet
from napari_unet.core.training.corrections import (
    Correction,
    CorrectionSet,
    CorrectionStore,
    corrected_region,
    default_corrections_dir,
    image_fingerprint,
    image_key,
    keep_corrections,
    loss_mask,
    reviewed_region,
    training_samples,
)


@pytest.fixture
def bundle() -> ModelBundle:
    torch.manual_seed(0)
    return ModelBundle(UNet(ModelConfig(base_width=4, depth=2)), PreprocessConfig(), PostprocessConfig())


def disc_labels() -> np.ndarray:
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.int32)
    labels[(yy - 16) ** 2 + (xx - 16) ** 2 < 64] = 1
    labels[(yy - 44) ** 2 + (xx - 44) ** 2 < 64] = 2
    return labels


def test_reviewed_region_covers_edited_objects_only():
    labels = disc_labels()
    edited = np.zeros(labels.shape, bool)
    edited[16, 16] = True  # one brush dab inside object 1
    region = reviewed_region(labels, edited, margin=2)
    assert region[labels == 1].all()
    assert not region[labels == 2].any()
    assert region[16, 25]  # just outside object 1 (its outline and background)
    assert not region[0, 63]
    assert not reviewed_region(labels, np.zeros_like(edited)).any()


def test_reviewed_region_of_erased_pixels():
    labels = disc_labels()
    edited = np.zeros(labels.shape, bool)
    edited[40:48, 40:48] = True
    labels[edited] = 0  # the person erased part of object 2
    region = reviewed_region(labels, edited, margin=0)
    assert region[edited].all()
    assert region.sum() == edited.sum()


def test_reviewed_region_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        reviewed_region(np.zeros((4, 4), int), np.zeros((4, 5), bool))


def test_fingerprint_identifies_content():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3, 64, 64), dtype=np.uint8)
    assert image_fingerprint(image) == image_fingerprint(image.copy())
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    assert image_fingerprint(changed) != image_fingerprint(image)
    assert image_fingerprint(image.astype(np.uint16)) != image_fingerprint(image)
    big = np.zeros((40, 512, 512), np.uint8)
    assert len(image_fingerprint(big)) == 16
    assert image_key("my image/1.tif", "abc") == "my_image_1.tif-abc"


def test_store_round_trip(tmp_path):
    store = CorrectionStore(tmp_path / "corrections")
    labels = disc_labels()
    edited = labels > 0
    image = (labels * 50).astype(np.uint8)
    path = store.save(Correction("img-1", (3,), image, labels, edited, meta={"name": "img"}))
    assert path.is_file() and path.parent == tmp_path / "corrections" / "img-1"
    store.save(Correction("img-1", (0,), image, labels, edited, fully_reviewed=True))
    assert store.keys() == ["img-1"] and store.find("1") == ["img-1"] and store.find("2") == []
    loaded = store.load("img-1")
    assert [c.plane for c in loaded] == [(0,), (3,)]
    assert loaded[0].fully_reviewed and loaded[0].mask.all()
    np.testing.assert_array_equal(loaded[1].labels, labels)
    np.testing.assert_array_equal(loaded[1].edited, edited)
    np.testing.assert_array_equal(loaded[1].image, image)
    assert loaded[1].meta["name"] == "img" and "saved" in loaded[1].meta
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]


def test_generations_keep_earlier_corrections(tmp_path):
    store = CorrectionStore(tmp_path)
    labels = disc_labels()
    assert store.next_generation("k", (2,)) == 0
    store.save(Correction("k", (2,), labels, labels, labels > 0))
    generation = store.next_generation("k", (2,))
    assert generation == 1
    store.save(Correction("k", (2,), labels, labels * 0, labels > 0, generation=generation))
    assert len(store.load("k")) == 2 and store.plane_count("k") == 1
    latest = store.load("k", latest_only=True)
    assert len(latest) == 1 and latest[0].generation == 1 and not latest[0].labels.any()


def test_store_skips_unreadable_files(tmp_path):
    store = CorrectionStore(tmp_path)
    store.save(Correction("k", (), np.zeros((8, 8)), np.zeros((8, 8), np.int32), np.ones((8, 8), bool)))
    (tmp_path / "k" / "plane-9-g0.npz").write_bytes(b"truncated")
    assert len(store.load("k")) == 1
    assert store.load("missing") == []


def test_correction_set_saves_as_it_goes_and_follows_the_folder(tmp_path):
    corrections = CorrectionSet(CorrectionStore(tmp_path / "a"))
    labels = disc_labels()
    corrections.update(Correction("k", (), labels, labels, labels > 0))
    version = corrections.version
    corrections.update(Correction("k", (), labels, labels, labels > 0))  # same plane: replaced
    assert len(corrections) == 1 and corrections.version > version
    assert (tmp_path / "a" / "k" / "plane-0-g0.npz").is_file()
    corrections.store = CorrectionStore(tmp_path / "b")
    assert (tmp_path / "b" / "k" / "plane-0-g0.npz").is_file()


def test_default_folder_is_never_the_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("NAPARI_UNET_CORRECTIONS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert default_corrections_dir().is_absolute()
    assert tmp_path not in default_corrections_dir().parents
    monkeypatch.setenv("NAPARI_UNET_CORRECTIONS_DIR", str(tmp_path / "c"))
    assert default_corrections_dir() == tmp_path / "c"


def test_training_samples_carry_the_reviewed_mask(bundle):
    labels = np.pad(disc_labels(), ((0, 96), (0, 96)))
    edited = np.zeros(labels.shape, bool)
    edited[44, 44] = True
    image = (labels > 0).astype(np.float32) * 200 + 10
    corrections = [
        Correction("k", (), image, labels, edited),
        Correction("k", (1,), image, labels, np.zeros_like(edited)),
    ]
    samples = training_samples(corrections, bundle)
    assert len(samples) == 1
    sample = samples[0]
    assert sample.name == "k"
    assert sample.targets.shape[0] == len(bundle.config.heads)
    assert 0.05 < sample.mask.mean() < 0.5  # around object 2 only


def test_default_review_margin_is_two_object_diameters():
    labels = np.pad(disc_labels(), ((0, 96), (0, 96)))
    edited = labels == 2
    region = reviewed_region(labels, edited)
    diameter = 2 * np.sqrt((labels == 2).sum() / np.pi)
    assert region[44, int(44 + 7 + 1.9 * diameter)]
    assert not region[44, int(44 + 8 + 2.2 * diameter)]
    assert region[labels == 1].any(), "the neighbouring object counts as seen"


def test_corrected_region_is_the_edits_and_the_objects_they_touch():
    labels = disc_labels()
    edited = np.zeros(labels.shape, bool)
    edited[16, 16] = True  # one dab inside object 1
    edited[60, 2] = True  # one erased background pixel
    region = corrected_region(labels, edited)
    np.testing.assert_array_equal(region, (labels == 1) | edited)  # no margin, object 2 untouched
    assert corrected_region(labels, np.zeros_like(edited), fully_reviewed=True).all()


def test_keep_corrections_shows_what_was_drawn_and_the_prediction_elsewhere():
    yy, xx = np.mgrid[:64, :64]
    prediction = np.zeros((64, 64), np.int32)
    prediction[(yy - 16) ** 2 + (xx - 16) ** 2 < 81] = 1  # the model brings back an erased object, larger
    prediction[(yy - 44) ** 2 + (xx - 44) ** 2 < 64] = 2  # an object the person did not touch
    prediction[(yy - 10) ** 2 + (xx - 50) ** 2 < 36] = 3  # uses the id the person painted with
    prediction[30:34, 0:10] = 4  # reaches 2 pixels into the painted object
    drawn = np.zeros((64, 64), np.int32)
    erased = (yy - 16) ** 2 + (xx - 16) ** 2 < 64
    painted = (yy - 32) ** 2 + (xx - 12) ** 2 < 16
    drawn[painted] = 3
    drawn[(yy - 44) ** 2 + (xx - 44) ** 2 < 64] = 2  # the old prediction of object 2, not edited
    region = corrected_region(drawn, erased | painted)

    merged = keep_corrections(prediction, drawn, region)

    np.testing.assert_array_equal(merged[region], drawn[region])  # 100 % of what was drawn
    assert not merged[erased].any()
    assert not (merged == 1).any(), "the rim of the erased object does not come back"
    np.testing.assert_array_equal(merged == 3, painted)  # id 3 is the painted object only
    np.testing.assert_array_equal(merged == 2, prediction == 2)
    new_id = int(merged[10, 50])
    assert new_id > 4 and (merged == new_id).sum() == (prediction == 3).sum()
    np.testing.assert_array_equal(merged == 4, (prediction == 4) & ~region)
    assert keep_corrections(prediction, drawn, region, next_id=100)[10, 50] == 100


def test_keep_corrections_without_corrections_is_the_prediction():
    prediction = disc_labels()
    merged = keep_corrections(prediction, np.zeros_like(prediction), np.zeros(prediction.shape, bool))
    np.testing.assert_array_equal(merged, prediction)
    with pytest.raises(ValueError, match="differ in shape"):
        keep_corrections(prediction, prediction[:10], np.zeros(prediction.shape, bool))


def merged_prediction_erased_and_one_cell_redrawn() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two touching cells predicted as one object; the person erases it and redraws only the left cell."""
    yy, xx = np.mgrid[:96, :96]
    left = (yy - 48) ** 2 + (xx - 38) ** 2 < 100
    right = (yy - 48) ** 2 + (xx - 58) ** 2 < 100
    erased = left | right  # the merged prediction, rubbed out
    labels = np.zeros((96, 96), np.int32)
    labels[left] = 1  # redrawn
    return labels, erased | left, right


def test_an_erased_merge_teaches_no_background_where_the_person_did_not_redraw():
    labels, edited, right = merged_prediction_erased_and_one_cell_redrawn()
    mask = loss_mask(labels, edited)
    assert mask[labels == 1].all(), "the redrawn cell trains"
    assert not mask[right & (labels == 0)].any(), "the other cell, erased but not redrawn, does not"
    assert mask[48, 24] and mask[20, 38], "background around the redrawn cell was seen and trains"
    # the old rule taught the whole erased merge as background
    assert reviewed_region(labels, edited)[right & (labels == 0)].all()


def test_a_plane_marked_reviewed_teaches_its_erased_pixels_as_background():
    labels, edited, right = merged_prediction_erased_and_one_cell_redrawn()
    assert loss_mask(labels, edited, fully_reviewed=True).all()
    assert Correction("k", (), labels.astype(np.float32), labels, edited, fully_reviewed=True).mask.all()


def test_only_erasing_teaches_nothing_until_the_plane_is_marked_reviewed(bundle):
    labels = np.zeros((64, 64), np.int32)
    edited = np.zeros((64, 64), bool)
    edited[10:30, 10:30] = True  # a false object rubbed out
    image = np.zeros((64, 64), np.float32)
    assert not loss_mask(labels, edited).any()
    assert training_samples([Correction("k", (), image, labels, edited)], bundle) == []
    assert len(training_samples([Correction("k", (), image, labels, edited, True)], bundle)) == 1


def test_held_out_pixels_never_train():
    labels = disc_labels()
    held_out = np.zeros(labels.shape, bool)
    held_out[:, 32:] = True
    correction = Correction("k", (), labels.astype(np.float32), labels, labels > 0, held_out=held_out)
    assert correction.mask[:, :32].any()
    assert not correction.mask[held_out].any()
