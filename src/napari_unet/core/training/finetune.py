"""Fine-tuning on a person's corrections: the job behind the widget's Fine-tune button, and its preset.

:class:`FineTuneJob` trains a copy of a model on the corrections of a session
(:class:`~napari_unet.core.training.corrections.CorrectionSet`) in rounds: a
round reads the corrections afresh, and in continuous mode the next round
starts, from the last round's weights, as soon as new corrections arrive.
Every round's model records the starting model as its parent, so the saved
version continues one lineage.  :data:`FINE_TUNE_PRESET` holds the settings
the widget trains with; the benchmarks measure the same job with the same
settings.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import replace
from typing import Any

from napari_unet.core.config import TrainingConfig
from napari_unet.core.io.provenance import fine_tune_round, stopped_early, training_images
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.progress import Progress, relay
from napari_unet.core.training.corrections import Correction, CorrectionSet, training_samples
from napari_unet.core.training.validation import (
    SnapshotSelector,
    describe,
    split_corrections,
    train_validated,
)

SNAPSHOT_EVERY = 5
"""Steps between copies of the weights that "Stop and keep" can save."""

FINE_TUNE_PRESET = TrainingConfig(
    steps=100,
    batch_size=4,
    crop_size=128,
    learning_rate=1e-4,
    freeze_norm=True,
    validate_every=SNAPSHOT_EVERY,
)
"""The widget's fine-tuning on a few corrected planes on a laptop CPU.

A learning rate of 5e-4 made sparse corrections hurt other images (AP@0.5 0.74 -> 0.71 with
wide review regions); 1e-4 keeps them at 0.74 and improves the corrected ones (see
:func:`napari_unet.core.training.corrections.reviewed_region`).  Mixed precision is chosen
per device by :func:`fine_tune_config`.
"""

NEW_KIND_AP = 0.5
"""A starting model scoring AP@0.5 below this on the held-out corrections does not know the kind of image."""

NEW_KIND_CHANGES: dict[str, Any] = {"steps_factor": 4, "learning_rate": 1e-3, "freeze_norm": False}
"""How a fine-tuning on a kind of image new to the model differs from :data:`FINE_TUNE_PRESET`.

The preset's gentle steps keep a model that already knows the images from
getting worse, but barely move one that has never seen their kind (brightfield
nuclei for a fluorescence model score 0.00 before and after).  Such a model
learns the new contrast with more steps (4 times as many), a higher learning rate and batch-norm
statistics of the new images; the best snapshot on the held-out corrections is
still the one kept, and it still has to beat the starting model to be used.
"""

_WAIT_SECONDS = 0.25


def new_kind_config(config: TrainingConfig) -> TrainingConfig:
    """``config`` changed as :data:`NEW_KIND_CHANGES` says."""
    changes = {key: value for key, value in NEW_KIND_CHANGES.items() if key != "steps_factor"}
    return replace(config, steps=config.steps * NEW_KIND_CHANGES["steps_factor"], **changes)


def fine_tune_config(steps: int | None = None, device: str = "auto", **changes: Any) -> TrainingConfig:
    """:data:`FINE_TUNE_PRESET` for ``steps`` steps on ``device``, with ``changes`` to its fields.

    Mixed precision (bf16 autocast) runs on CPU and CUDA: 0.14 s instead of
    0.25 s a step on a 2-core CPU; snapshots for "Stop and keep" come at
    least once a run.

    Parameters
    ----------
    steps : int, optional
        Default: the preset's.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    **changes
        Other :class:`~napari_unet.core.config.TrainingConfig` fields (e.g.
        ``batch_size``, ``seed``).

    """
    from napari_unet.core.devices import choose_device  # imports torch, which importing this need not

    steps = steps or FINE_TUNE_PRESET.steps
    fields: dict[str, Any] = {
        "steps": steps,
        "amp": choose_device(device).type in ("cuda", "cpu"),
        "validate_every": min(FINE_TUNE_PRESET.validate_every, steps),
    }
    return replace(FINE_TUNE_PRESET, **{**fields, **changes})


class FineTuneJob:
    """Fine-tune a model on a session's corrections; optionally keep going as new ones arrive.

    Parameters
    ----------
    parent : ModelBundle
        The model to start from (left untouched).
    corrections : CorrectionSet
        Read afresh at the start of every round.
    config : TrainingConfig
        One round (see :func:`fine_tune_config`); ``validate_every`` sets how
        often :attr:`latest` is refreshed.
    device : str
    continuous : bool
        After a round, wait for new corrections and train another round on
        all of them, from the last round's weights, until the job is closed.
    adapt : bool
        When the starting model scores AP@0.5 under :data:`NEW_KIND_AP` on the
        held-out corrections, train as :func:`new_kind_config` says.

    Attributes
    ----------
    latest : ModelBundle or None
        The newest weights (refreshed during a round), for "Stop and keep".
    steps_done : int
    selector : SnapshotSelector or None
        The current round's scores on the held-out corrections.

    """

    def __init__(
        self,
        parent: ModelBundle,
        corrections: CorrectionSet,
        config: TrainingConfig,
        device: str = "auto",
        continuous: bool = False,
        adapt: bool = True,
    ) -> None:
        self.parent = parent
        self.adapt = adapt
        self.corrections = corrections
        self.config = config
        self.device = device
        self.continuous = continuous
        self.latest: ModelBundle | None = None
        self.steps_done = 0
        self._samples: list[str] = []
        self._images: list[dict[str, str]] = []
        self.selector: SnapshotSelector | None = None
        self._latest_scores: dict[str, Any] | None = None
        self._scored = ""  # the last round's comparison, shown while waiting

    def _checkpoint(self, current: ModelBundle) -> dict[str, float]:
        # train() calls this with a snapshot of the weights every validate_every steps
        self.latest = current
        self._latest_scores = None  # a snapshot in the middle of a round: not scored as a whole
        return {}

    def kept_result(self) -> ModelBundle | None:
        """:attr:`latest` with the provenance of a run stopped early (``None`` if nothing trained).

        When :attr:`latest` is a finished round's model (continuous mode, waiting
        for corrections), its scores on the held-out corrections are kept too.
        """
        if self.latest is None:
            return None
        result = self.latest
        result.provenance = stopped_early(
            self.parent, self.config, self.steps_done, self._samples, self._images
        )
        if self._latest_scores is not None:
            result.provenance["held_out_validation"] = self._latest_scores
        return result

    def run(self) -> Generator[Progress, None, ModelBundle]:
        """Train; yields per step (and while waiting for corrections); returns the trained model.

        Each round sets aside part of the corrections (see
        :func:`~napari_unet.core.training.validation.split_corrections`), scores
        the parent and the snapshots on them, stops once they stop improving
        and returns the best snapshot, the scores in its provenance
        (``held_out_validation``).

        Raises
        ------
        ValueError
            If there is nothing to train on (and the job is not continuous).

        """
        bundle = self.parent
        seen = -1
        round_number = 0
        while True:
            if self.corrections.version == seen:
                yield Progress(0, 0, f"waiting for new corrections{self._scored and f' ({self._scored})'}")
                time.sleep(_WAIT_SECONDS)
                continue
            seen = self.corrections.version
            corrections: list[Correction] = self.corrections.snapshot()
            split = split_corrections(corrections)
            samples = training_samples(split.training, bundle)
            if not samples:
                if not self.continuous:
                    raise ValueError("no corrections to train on: correct some labels first")
                continue
            self._samples = sorted({c.name for c in corrections})
            self._images = training_images([(c.name, c.image) for c in split.training if c.mask.any()])
            config = replace(self.config, seed=self.config.seed + round_number)
            done_before = self.steps_done
            # every round is compared with the model the person chose, not the previous round
            self.selector = selector = SnapshotSelector(split, self.device)
            yield Progress(0, config.steps, "scoring the starting model on the held-out corrections")
            parent_scores = selector.score_parent(self.parent)
            if self.adapt and parent_scores["ap50"] < NEW_KIND_AP:
                config = new_kind_config(config)
                yield Progress(
                    0,
                    config.steps,
                    f"the model scores AP@0.5 {parent_scores['ap50']:.2f} on the held-out corrections: a kind of "
                    f"image new to it, training {config.steps} steps at learning rate {config.learning_rate:g}",
                )

            def count(record: Progress, done_before: int = done_before) -> Progress:
                self.steps_done = done_before + record.step
                return record

            training = train_validated(
                bundle, samples, config, selector, device=self.device, extra_validate=self._checkpoint
            )
            result = yield from relay(training, count)
            result.provenance = fine_tune_round(
                result.provenance, self.parent, round_number + 1, self.steps_done, self._images
            )
            self.latest = bundle = result
            self._latest_scores = result.provenance.get("held_out_validation")
            self._scored = describe(self._latest_scores) if self._latest_scores else ""
            round_number += 1
            if not self.continuous:
                return result


__all__ = [
    "FINE_TUNE_PRESET",
    "NEW_KIND_AP",
    "NEW_KIND_CHANGES",
    "SNAPSHOT_EVERY",
    "FineTuneJob",
    "fine_tune_config",
    "new_kind_config",
]
