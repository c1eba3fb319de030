"""Validation on the person's own corrections: held-out objects, scores, best snapshot, stopping early."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_unet.core.models import store
from napari_unet.core.progress import Progress, run
from napari_unet.core.training.corrections import Correction, CorrectionSet, CorrectionStore
from napari_unet.core.training.finetune import FineTuneJob, fine_tune_config
from napari_unet.core.training.validation import (
    SnapshotSelector,
    corrected_objects,
    describe,
    score,
    split_corrections,
    train_validated,
    validation_of,
)
from tests.helpers import tiny_bundle as tiny_model


def squares(count: int, seed: int = 0, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """An image of ``count`` bright squares on a row grid, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((size, size), np.int32)
    for index in range(count):
        y, x = 6 + 22 * (index // 4), 6 + 22 * (index % 4)
        labels[y : y + 12, x : x + 12] = index + 1
    image = (rng.random((size, size)) * 0.2 + (labels > 0) * 0.8).astype(np.float32)
    return image, labels


def painted(count: int, seed: int = 0, plane: tuple[int, ...] = ()) -> Correction:
    """A plane whose ``count`` objects the person all painted."""
    image, labels = squares(count, seed)
    return Correction("cells-0123", plane, image, labels, labels > 0)


def test_one_object_in_five_of_each_image_is_held_out_and_never_trains() -> None:
    corrections = [painted(10, 0, (0,)), painted(3, 1, (1,))]
    split = split_corrections(corrections)

    assert not split.shared
    assert [p.name for p in split.held_out] == ["cells-0123[0]", "cells-0123[1]"], "each image contributes"
    for correction, trained in zip(corrections, split.training, strict=True):
        assert trained.held_out is not None and trained.held_out.any()
        assert not trained.mask[trained.held_out].any()
        assert trained.mask.any(), "the rest still trains"
        held = np.unique(correction.labels[trained.held_out])
        held = held[held > 0]
        kept = np.setdiff1d(corrected_objects(correction), held)
        assert trained.mask[np.isin(correction.labels, kept)].all()
    first = split.training[0]
    fully_held = [
        i for i in corrected_objects(corrections[0]) if not first.mask[corrections[0].labels == i].any()
    ]
    assert len(fully_held) == 2, "10 objects: ids 3 and 8 held out"
    assert all(p.region.any() for p in split.held_out)
    assert split.objects == 3


def test_too_few_objects_to_split_use_everything_for_both_and_say_so() -> None:
    corrections = [painted(2, 0, (0,)), painted(1, 1, (1,))]
    split = split_corrections(corrections)
    assert split.shared
    assert split.training == corrections
    assert len(split.held_out) == 2 and split.objects == 3
    line = describe(
        {
            "parent": {"ap50": 0.5, "foreground_iou": 0.6},
            "kept": {"ap50": 0.75, "foreground_iou": 0.7},
            "objects": 3,
            "shared": True,
        }
    )
    assert line.startswith("your corrections: AP@0.5 0.50 → 0.75 (foreground IoU 0.60 → 0.70; 3 held-out")
    assert "too few corrected objects" in line


def test_scores_count_only_the_held_out_reviewed_pixels() -> None:
    model = tiny_model()
    split = split_corrections([painted(10, 0)])
    plane = split.held_out[0]
    scores = score(model, split.held_out, "cpu")
    assert 0.0 <= scores["ap50"] <= 1.0 and 0.0 <= scores["foreground_iou"] <= 1.0
    # the same plane with everything outside the region changed scores the same
    changed = replace(plane, labels=np.where(plane.region, plane.labels, 77))
    assert score(model, [changed], "cpu") == scores


def test_the_best_snapshot_is_kept_and_a_stalled_training_stops_early() -> None:
    parent = tiny_model()
    split = split_corrections([painted(10, 0)])
    samples = [c.sample(parent) for c in split.training]
    # (almost) no learning: every snapshot scores as the parent does, so the second scoring is no better
    config = fine_tune_config(10, "cpu", batch_size=1, crop_size=32, amp=False, learning_rate=1e-12)
    config = replace(config, validate_every=1)
    selector = SnapshotSelector(split, "cpu", score_every=1, patience=1)
    records: list[Progress] = []
    kept = run(train_validated(parent, samples, config, selector, device="cpu"), records.append)

    assert records[0].message == "scoring the starting model on the held-out corrections"
    # no better after step 1, but training goes on to half its steps before it stops
    assert records[-1].message.startswith(
        "stopped at step 5: no better on the held-out corrections since step 1"
    )
    record = validation_of(kept)
    assert record is not None
    assert record["steps"] == 5 and record["kept_step"] == 1 and len(record["scorings"]) == 5
    assert record["parent"] == record["kept"] and record["better"] is False
    assert kept.provenance["parent"] == "tiny" and kept.provenance["steps"] == 5


def test_a_fine_tune_records_parent_and_kept_scores_in_its_lineage(tmp_path: Path) -> None:
    corrections = CorrectionSet(CorrectionStore(tmp_path))
    corrections.update(painted(10, 0, (0,)))
    corrections.update(painted(6, 1, (1,)))
    parent = tiny_model()
    job = FineTuneJob(
        parent,
        corrections,
        fine_tune_config(6, "cpu", batch_size=2, crop_size=48, amp=False),
        "cpu",
        adapt=False,
    )
    tuned = run(job.run())

    record = validation_of(tuned)
    assert record is not None and job.selector is not None
    assert record["parent"] == {k: round(v, 4) for k, v in job.selector.parent_scores.items()}
    assert record["held_out"] == ["cells-0123[0]", "cells-0123[1]"] and not record["shared"]
    kept, before = record["kept"], record["parent"]
    needed = 2 / record["objects"]  # two held-out objects' worth
    assert record["better"] == (
        kept["ap50"] >= before["ap50"] + needed - 1e-3
        or (
            kept["ap50"] >= before["ap50"]
            and kept["foreground_iou"] >= before["foreground_iou"] + 0.02 - 1e-3
        )
    )
    assert record["scorings"][-1]["step"] == 6
    assert tuned.provenance["parent_hash"] == parent.weights_hash() and tuned.provenance["rounds"] == 1
    assert describe(record).startswith(f"your corrections: AP@0.5 {record['parent']['ap50']:.2f} → ")
    # napari-unet models info shows the same numbers
    (line,) = [line for line in store.describe(tuned) if line.startswith("held out:")]
    assert f"parent → this: AP@0.5 {record['parent']['ap50']:.2f} → {record['kept']['ap50']:.2f}" in line
    assert line.endswith("better than its parent") and ("NOT" in line) != record["better"]


def test_better_means_a_gain_larger_than_chance_on_the_held_out_objects() -> None:
    """Two more held-out objects right beat the parent; one is chance. So does a clearly better outline."""
    selector = SnapshotSelector(split_corrections([painted(2)]))
    objects = selector.split.objects
    assert objects >= 1
    step = 1 / objects  # what one object more or less changes, roughly
    selector.parent_scores = {"ap50": 0.5, "foreground_iou": 0.8}
    for best, better in [
        ({"ap50": 0.5 + 2 * step, "foreground_iou": 0.7}, True),
        ({"ap50": 0.5 + step, "foreground_iou": 0.8}, False),  # one object: chance
        ({"ap50": 0.5, "foreground_iou": 0.82}, True),
        ({"ap50": 0.5, "foreground_iou": 0.81}, False),  # noise
        ({"ap50": 0.45, "foreground_iou": 0.95}, False),
    ]:
        selector.best_scores = best
        assert selector.better is better, best
