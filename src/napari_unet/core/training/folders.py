"""Training on folders of labelled images: the job behind ``napari-unet train``.

A new model trains from scratch with :data:`SCRATCH_PRESET`; an existing one
is fine-tuned (``--from``) with :data:`FROM_MODEL_PRESET`, its batch-norm
statistics frozen, and validated as the widget's fine-tuning is: one labelled
object in five is held out, the parent and the snapshots are scored on them,
training stops when they stop improving and the best snapshot is kept (see
:mod:`~napari_unet.core.training.validation`).  :func:`train_on_folders` reads the images, prepares the
training samples, optionally scores the model on validation folders during
training, and records the data and the command in the new model's provenance.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

from napari_unet.core.config import TrainingConfig
from napari_unet.core.evaluation.evaluate import evaluate_bundle
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.io.provenance import training_data
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.progress import Progress
from napari_unet.core.training.checkpoint import Checkpointing
from napari_unet.core.training.loop import Validator, train
from napari_unet.core.training.samples import prepare_sample
from napari_unet.core.training.validation import (
    SCORE_EVERY,
    SnapshotSelector,
    labelled_split,
    train_validated,
)

SCRATCH_PRESET = TrainingConfig(steps=3000, learning_rate=2e-3, amp=True)
"""``napari-unet train`` without ``--from``: a new model."""

FROM_MODEL_PRESET = TrainingConfig(steps=400, learning_rate=5e-4, freeze_norm=True, amp=True)
"""``napari-unet train --from MODEL``: fine-tuning on labelled folders (batch-norm statistics frozen)."""


def folder_config(fine_tuning: bool, **changes: Any) -> TrainingConfig:
    """:data:`FROM_MODEL_PRESET` or :data:`SCRATCH_PRESET` with ``changes`` (``None`` keeps the preset's)."""
    preset = FROM_MODEL_PRESET if fine_tuning else SCRATCH_PRESET
    return replace(preset, **{field: value for field, value in changes.items() if value is not None})


@dataclass(frozen=True)
class LabelledFolders:
    """Images and their instance labels, in two folders with the same file names.

    Attributes
    ----------
    images, labels : path
        As given (kept so in the provenance).
    pattern : str
        Glob selecting image files.

    """

    images: str | os.PathLike[str]
    labels: str | os.PathLike[str]
    pattern: str = "*"

    def read(self) -> list[tuple[str, Any, Any]]:
        """``(name, image, labels)`` for every image (see :func:`~napari_unet.core.io.files.read_labelled_folder`)."""
        return read_labelled_folder(self.images, self.labels, self.pattern)


def train_on_folders(
    bundle: ModelBundle,
    training: LabelledFolders,
    config: TrainingConfig,
    device: str = "auto",
    validation: LabelledFolders | None = None,
    command: str = "",
    hold_out: bool = False,
    checkpoint: Checkpointing | None = None,
) -> Generator[Progress, None, ModelBundle]:
    """Train a copy of ``bundle`` on labelled folders.

    Parameters
    ----------
    bundle : ModelBundle
        A new model or the one to fine-tune (left untouched).
    training : LabelledFolders
    config : TrainingConfig
        See :func:`folder_config`.
    device : str
    validation : LabelledFolders, optional
        Scored every ``config.validate_every`` steps and at the end (metrics
        in the records and the model's provenance).
    command : str
        The command line, kept in the provenance.
    hold_out : bool
        Hold out labelled objects and keep the best snapshot on them
        (:func:`~napari_unet.core.training.validation.train_validated`; the
        scores in the provenance's ``held_out_validation``).  Scored every
        ``config.validate_every`` steps, or every
        :data:`~napari_unet.core.training.validation.SCORE_EVERY` if that is 0.
    checkpoint : Checkpointing, optional
        Save the run's state regularly and resume from it (see
        :func:`~napari_unet.core.training.loop.train`); not with ``hold_out``,
        whose early stop has state of its own.

    Yields
    ------
    Progress
        First one without metrics once the samples are prepared, then one per
        training step (see :func:`~napari_unet.core.training.loop.train`).

    Returns
    -------
    ModelBundle

    Raises
    ------
    InputError
        If a folder cannot be read.
    ValueError
        If both ``hold_out`` and ``checkpoint`` are given, or the checkpoint
        belongs to a run with other settings.

    """
    if hold_out and checkpoint is not None:
        raise ValueError("checkpoints are for training on all labels; a run holding labels out cannot resume")
    pairs = training.read()
    started = time.perf_counter()
    split = labelled_split(pairs) if hold_out else None
    if split is not None:
        samples = [c.sample(bundle) for c in split.training if c.mask.any()]
    else:
        samples = [
            prepare_sample(image, labels, bundle.config, bundle.preprocess, name=name)
            for name, image, labels in pairs
        ]
    yield Progress(
        0, config.steps, f"prepared {len(samples)} training images in {time.perf_counter() - started:.1f} s"
    )
    validate: Validator | None = None
    if validation is not None:
        validation_pairs = validation.read()

        def validate(current: ModelBundle) -> dict[str, float]:
            return evaluate_bundle(current, validation_pairs, device=device)

    provenance = training_data(
        training.images,
        training.labels,
        training.pattern,
        [(name, image) for name, image, _ in pairs],
        command,
    )
    if split is None:
        return (
            yield from train(
                bundle,
                samples,
                config,
                device=device,
                validate=validate,
                provenance=provenance,
                checkpoint=checkpoint,
            )
        )
    every = config.validate_every or SCORE_EVERY
    selector = SnapshotSelector(split, device, score_every=every)
    return (
        yield from train_validated(
            bundle,
            samples,
            replace(config, validate_every=every),
            selector,
            device=device,
            extra_validate=validate,
            provenance=provenance,
        )
    )


__all__ = ["FROM_MODEL_PRESET", "SCRATCH_PRESET", "LabelledFolders", "folder_config", "train_on_folders"]
