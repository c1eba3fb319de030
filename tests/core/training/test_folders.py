"""``napari-unet train``'s job: presets, labelled folders, validation and the provenance it records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.io.files import InputError
from napari_unet.core.models.lineage import pixels_sha256
from napari_unet.core.progress import Progress, run
from napari_unet.core.training.folders import (
    FROM_MODEL_PRESET,
    SCRATCH_PRESET,
    LabelledFolders,
    folder_config,
    train_on_folders,
)
from tests.helpers import tiny_bundle


def labelled_folder(root: Path, count: int) -> LabelledFolders:
    rng = np.random.default_rng(count)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(count):
        labels = np.zeros((48, 48), np.uint16)
        labels[6:18, 6:18], labels[26:40, 24:40] = 1, 2
        image = (rng.random((48, 48)) * 100 + (labels > 0) * 800).astype(np.uint16)
        tifffile.imwrite(root / "images" / f"im{index}.tif", image)
        tifffile.imwrite(root / "labels" / f"im{index}.tif", labels)
    return LabelledFolders(str(root / "images"), str(root / "labels"))


def test_presets_and_changes() -> None:
    assert (SCRATCH_PRESET.steps, SCRATCH_PRESET.learning_rate, SCRATCH_PRESET.freeze_norm) == (
        3000,
        2e-3,
        False,
    )
    assert (FROM_MODEL_PRESET.steps, FROM_MODEL_PRESET.learning_rate, FROM_MODEL_PRESET.freeze_norm) == (
        400,
        5e-4,
        True,
    )
    assert folder_config(True) == FROM_MODEL_PRESET and folder_config(False) == SCRATCH_PRESET
    tuned = folder_config(True, steps=None, learning_rate=1e-3, freeze_norm=False, amp=None)
    assert (tuned.steps, tuned.learning_rate, tuned.freeze_norm, tuned.amp) == (400, 1e-3, False, True)


def test_training_on_folders_validates_and_records_data_and_command(tmp_path: Path) -> None:
    training = labelled_folder(tmp_path / "train", 2)
    validation = labelled_folder(tmp_path / "val", 1)
    config = folder_config(False, steps=3, batch_size=1, crop_size=32, amp=False)
    records: list[Progress] = []
    job = train_on_folders(
        tiny_bundle("new"), training, config, "cpu", validation, command="napari-unet train ..."
    )
    trained = run(job, records.append)

    assert records[0].message.startswith("prepared 2 training images in ") and not records[0].metrics
    assert [r.step for r in records[1:]] == [1, 2, 3]
    assert "ap50" in records[-1].metrics  # validated at the end
    provenance = trained.provenance
    assert provenance["data"] == {"images": training.images, "labels": training.labels, "pattern": "*"}
    assert provenance["command"] == "napari-unet train ..." and provenance["steps"] == 3
    image = tifffile.imread(Path(training.images) / "im0.tif")
    assert provenance["images"][0] == {"name": "im0.tif", "sha256": pixels_sha256(image)}
    assert provenance["parent"] == "new" and 0 <= provenance["metrics"]["ap50"] <= 1


def test_a_folder_without_labels_fails_before_training(tmp_path: Path) -> None:
    training = labelled_folder(tmp_path / "train", 1)
    (Path(training.labels) / "im0.tif").unlink()
    with pytest.raises(InputError, match="im0.tif"):
        run(train_on_folders(tiny_bundle("new"), training, folder_config(False, steps=1), "cpu"))


def test_fine_tuning_from_a_model_holds_out_labelled_objects_and_keeps_the_best_snapshot(
    tmp_path: Path,
) -> None:
    training = labelled_folder(tmp_path / "train", 3)  # 6 objects: one of each image's two held out
    validation = labelled_folder(tmp_path / "val", 1)
    config = folder_config(True, steps=4, batch_size=1, crop_size=32, amp=False)
    records: list[Progress] = []
    job = train_on_folders(tiny_bundle("new"), training, config, "cpu", validation, hold_out=True)
    trained = run(job, records.append)

    assert records[1].message == "scoring the starting model on the held-out corrections"
    assert "held_out_ap50" in records[-1].metrics and "ap50" in records[-1].metrics  # both validations
    record = trained.provenance["held_out_validation"]
    assert record["held_out"] == ["im0.tif", "im1.tif", "im2.tif"] and record["objects"] == 3
    assert not record["shared"] and record["scorings"][-1]["step"] == 4
    assert set(record["parent"]) == {"ap50", "foreground_iou"}
    assert trained.provenance["data"]["images"] == training.images
