"""The one provenance builder: label files and models."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.config import (
    InferenceConfig,
    PostprocessConfig,
    TrainingConfig,
)
from napari_unet.core.io import provenance
from napari_unet.core.models.lineage import pixels_sha256
from tests.helpers import tiny_bundle


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "cells" / "plate 1.tif"
    path.parent.mkdir()
    path.write_bytes(b"not really a TIFF, but bytes with a hash")
    return path


def labels_record(path: Path, detail: str) -> dict:
    model = tiny_bundle(
        "nuclei-v2",
        provenance={"date": "2024-05-01T10:00:00+00:00"},
        source="/home/someone/models/nuclei-v2.pt",
    )
    return provenance.labels_provenance(
        model, InferenceConfig(device="cpu"), PostprocessConfig(), "cpu", path, "ZYX", True, 17.5, detail
    )


def test_label_files_keep_names_and_hashes_and_paths_only_on_request(input_file: Path) -> None:
    minimal = labels_record(input_file, "minimal")
    assert minimal["input"] == "plate 1.tif" and minimal["model_source"] == "nuclei-v2.pt"
    assert "host" not in minimal
    assert minimal["input_sha256"] == hashlib.sha256(input_file.read_bytes()).hexdigest()
    assert minimal["input_bytes"] == input_file.stat().st_size and minimal["input_axes"] == "ZYX"
    assert minimal["model"] == "nuclei-v2" and minimal["model_trained"] == "2024-05-01T10:00:00+00:00"
    assert minimal["stitch"] is True and minimal["diameter"] == 17.5 and minimal["device"] == "cpu"
    assert (
        minimal["versions"]["torch"] == torch.__version__ and minimal["versions"]["numpy"] == np.__version__
    )
    assert str(input_file.parent) not in str(minimal) and "/home/someone" not in str(minimal)

    full = labels_record(input_file, "full")
    assert full["input"] == str(input_file.resolve()) and full["host"] == socket.gethostname()
    assert full["model_source"] == "/home/someone/models/nuclei-v2.pt"
    assert {k: v for k, v in full.items() if k not in ("input", "model_source", "host", "date")} == {
        k: v for k, v in minimal.items() if k not in ("input", "model_source", "date")
    }

    with pytest.raises(ValueError, match="one of minimal, full"):
        labels_record(input_file, "everything")


def test_a_trained_model_records_its_lineage_settings_and_data() -> None:
    parent = tiny_bundle("nuclei-v1", provenance={"parent": "nuclei", "date": "2024-01-01", "steps": 50})
    config = TrainingConfig(steps=30, learning_rate=1e-4)
    extra = provenance.training_data(
        "data/images", "data/labels", "*.tif", [("a.tif", np.ones((4, 4), np.uint8))], "napari-unet train"
    )
    record = provenance.trained_model(parent, config, ["a.tif"], 12.34, 0.5, {"ap50": 0.8}, extra=extra)
    assert record["parent"] == "nuclei-v1" and record["parent_hash"] == parent.weights_hash()
    assert record["ancestors"][0] == {
        "name": "nuclei-v1",
        "hash": parent.weights_hash(),
        "date": "2024-01-01",
        "steps": 50,
    }
    assert record["steps"] == 30 and record["training"]["learning_rate"] == 1e-4
    assert record["samples"] == ["a.tif"] and record["seconds"] == 12.3 and record["final_loss"] == 0.5
    assert record["metrics"] == {"ap50": 0.8}
    assert record["data"] == {"images": "data/images", "labels": "data/labels", "pattern": "*.tif"}
    assert record["images"] == [{"name": "a.tif", "sha256": pixels_sha256(np.ones((4, 4), np.uint8))}]
    assert record["command"] == "napari-unet train"
    assert len(record["ancestors"]) == 1  # the parent's own provenance is summarised, not copied
    assert "nuclei" not in [entry["name"] for entry in record["ancestors"]]


def test_fine_tuning_rounds_and_early_stops_keep_the_first_parent() -> None:
    start = tiny_bundle("phase-cells", source="/models/phase-cells.pt")
    round_two = tiny_bundle("phase-cells", seed=1)  # the weights the first round ended with
    trained = provenance.trained_model(round_two, TrainingConfig(steps=5), ["x"], 1.0, 0.3, {})
    images = provenance.training_images([("x", np.zeros((3, 3)))])
    record = provenance.fine_tune_round(trained, start, rounds=2, steps=10, images=images)
    assert record["parent"] == "phase-cells" and record["parent_hash"] == start.weights_hash()
    assert record["parent_hash"] != round_two.weights_hash()
    assert record["parent_source"] == "/models/phase-cells.pt"
    assert (record["rounds"], record["steps"], record["images"]) == (2, 10, images)

    kept = provenance.stopped_early(start, TrainingConfig(steps=100), 35, ["x"], images)
    assert kept["stopped_early"] is True and kept["steps"] == 35 and kept["training"]["steps"] == 100
    assert kept["parent_hash"] == start.weights_hash() and kept["samples"] == ["x"]
