"""The fine-tune job behind the widget's Fine-tune button, without Qt: rounds, lineage, stopping early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.lineage import pixels_sha256
from napari_unet.core.progress import Progress, run
from napari_unet.core.training.corrections import Correction, CorrectionSet, CorrectionStore
from napari_unet.core.training.finetune import (
    FINE_TUNE_PRESET,
    NEW_KIND_AP,
    FineTuneJob,
    fine_tune_config,
    new_kind_config,
)
from tests.helpers import tiny_bundle


def correction(seed: int, plane: tuple[int, ...] = (0,)) -> Correction:
    rng = np.random.default_rng(seed)
    image = rng.random((48, 48)).astype(np.float32)
    labels = np.zeros((48, 48), np.int32)
    labels[8:20, 8:20] = 1
    labels[26:40, 22 + seed % 5 : 38] = 2
    edited = np.zeros((48, 48), bool)
    edited[24:44, 20:44] = True
    return Correction("cells-0123", plane, image, labels, edited)


@pytest.fixture
def corrections(tmp_path: Path) -> CorrectionSet:
    return CorrectionSet(CorrectionStore(tmp_path / "corrections"))


def tiny_config(steps: int = 4):
    return fine_tune_config(steps, "cpu", batch_size=1, crop_size=32, amp=False)


def weights(bundle: ModelBundle) -> list[torch.Tensor]:
    return [p.detach().clone() for p in bundle.network.parameters()]


def test_the_preset_is_the_widgets_setting_for_a_few_corrected_planes() -> None:
    config = fine_tune_config(device="cpu")
    assert config.steps == FINE_TUNE_PRESET.steps == 100
    assert (config.batch_size, config.crop_size, config.learning_rate) == (4, 128, 1e-4)
    assert config.freeze_norm and config.amp  # bf16 on a CPU
    assert config.validate_every == 5  # a copy for "Stop and keep" every 5 steps
    short = fine_tune_config(3, "cpu", batch_size=1, seed=7)
    assert (short.steps, short.validate_every, short.batch_size, short.seed) == (3, 3, 1, 7)
    assert short.learning_rate == FINE_TUNE_PRESET.learning_rate


def test_one_round_trains_a_copy_and_records_its_lineage(corrections: CorrectionSet) -> None:
    parent = tiny_bundle(source="/models/tiny.pt")
    before = weights(parent)
    corrections.update(correction(0))
    job = FineTuneJob(parent, corrections, tiny_config(), device="cpu", adapt=False)
    records: list[Progress] = []
    tuned = run(job.run(), records.append)

    assert records[0].message == "scoring the starting model on the held-out corrections"
    assert [r.step for r in records[1:]] == [1, 2, 3, 4]
    assert all("loss" in r.metrics for r in records[1:])
    assert job.steps_done == 4 and job.latest is tuned
    assert all(torch.equal(a, b) for a, b in zip(before, weights(parent), strict=True)), "parent untouched"
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(tuned), strict=True))
    provenance = tuned.provenance
    assert provenance["parent"] == "tiny" and provenance["parent_hash"] == parent.weights_hash()
    assert provenance["parent_source"] == "/models/tiny.pt"
    assert provenance["ancestors"][0]["name"] == "tiny" and provenance["steps"] == 4
    assert provenance["rounds"] == 1 and provenance["samples"] == ["cells-0123[0]"]
    assert provenance["images"] == [{"name": "cells-0123[0]", "sha256": pixels_sha256(correction(0).image)}]
    assert provenance["training"]["learning_rate"] == FINE_TUNE_PRESET.learning_rate


def test_nothing_to_train_on_is_a_clear_error(corrections: CorrectionSet) -> None:
    job = FineTuneJob(
        tiny_bundle(source="/models/tiny.pt"), corrections, tiny_config(), device="cpu", adapt=False
    )
    with pytest.raises(ValueError, match="no corrections to train on"):
        run(job.run())


def test_continuous_rounds_start_when_new_corrections_arrive_and_keep_one_lineage(
    corrections: CorrectionSet,
) -> None:
    parent = tiny_bundle(source="/models/tiny.pt")
    corrections.update(correction(0))
    job = FineTuneJob(parent, corrections, tiny_config(3), device="cpu", continuous=True, adapt=False)
    rounds = job.run()
    messages = []
    for record in rounds:
        messages.append(record.message)
        if record.message.startswith("waiting for new corrections"):
            if job.steps_done == 6:
                break
            corrections.update(correction(1, plane=(1,)))  # a person corrects while it trains
    rounds.close()

    assert messages.count("done") == 2 and job.steps_done == 6
    assert job.latest is not None
    provenance = job.latest.provenance
    assert provenance["rounds"] == 2 and provenance["steps"] == 6
    assert provenance["parent"] == "tiny" and provenance["parent_hash"] == parent.weights_hash()
    assert provenance["samples"] == ["cells-0123[0]", "cells-0123[1]"]
    # between rounds the last round's comparison is shown, and "Stop and keep" keeps its scores
    waiting = [m for m in messages if m.startswith("waiting")][-1]
    assert waiting.startswith("waiting for new corrections (your corrections: AP@0.5 ")
    scores = provenance["held_out_validation"]
    kept = job.kept_result()
    assert kept is not None and kept.provenance["stopped_early"]
    assert kept.provenance["held_out_validation"] == scores


def test_stopping_early_keeps_the_latest_snapshot_with_its_provenance(corrections: CorrectionSet) -> None:
    parent = tiny_bundle(source="/models/tiny.pt")
    corrections.update(correction(0))
    job = FineTuneJob(parent, corrections, tiny_config(8), device="cpu", adapt=False)
    assert job.kept_result() is None  # nothing trained yet
    training = job.run()
    for record in training:
        if record.step == 6:  # a snapshot was taken at step 5
            break
    training.close()
    kept = job.kept_result()
    assert kept is not None
    assert kept.provenance["stopped_early"] is True and kept.provenance["steps"] == 6
    assert kept.provenance["parent"] == "tiny" and kept.provenance["samples"] == ["cells-0123[0]"]
    assert "held_out_validation" not in kept.provenance  # a snapshot within a round was not scored
    assert kept.weights_hash() != parent.weights_hash()


def test_a_model_new_to_the_kind_of_image_trains_longer_and_adapts_its_normalisation(
    corrections: CorrectionSet,
) -> None:
    """A random model scores ~0 on the held-out corrections: the job says so and trains as for a new kind."""
    corrections.update(correction(0))
    corrections.update(correction(1, plane=(1,)))
    config = tiny_config(3)
    job = FineTuneJob(tiny_bundle(), corrections, config, device="cpu")
    records: list[Progress] = []
    tuned = run(job.run(), records.append)
    assert job.selector is not None and job.selector.parent_scores["ap50"] < NEW_KIND_AP
    adapted = new_kind_config(config)
    assert (adapted.steps, adapted.learning_rate, adapted.freeze_norm) == (12, 1e-3, False)
    [notice] = [r for r in records if r.message.startswith("the model scores AP@0.5")]
    assert notice.message.endswith("a kind of image new to it, training 12 steps at learning rate 0.001")
    assert records[-1].total == 12 and tuned.provenance["training"]["steps"] == 12
    assert tuned.provenance["training"]["freeze_norm"] is False


def test_a_model_that_knows_the_images_keeps_the_gentle_preset(
    corrections: CorrectionSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model that scores at least NEW_KIND_AP on the held-out corrections trains with the preset as given."""
    import napari_unet.core.training.finetune as finetune

    monkeypatch.setattr(finetune, "NEW_KIND_AP", 0.0)  # the tiny random model counts as knowing the images
    corrections.update(correction(0))
    corrections.update(correction(1, plane=(1,)))
    records: list[Progress] = []
    tuned = run(FineTuneJob(tiny_bundle(), corrections, tiny_config(3), device="cpu").run(), records.append)
    assert not any(r.message.startswith("the model scores AP@0.5") for r in records)
    assert tuned.provenance["training"]["steps"] == 3 and tuned.provenance["training"]["freeze_norm"] is True
