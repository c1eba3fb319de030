"""Scoring a fine-tuning on the person's own corrections: held-out objects, the best snapshot, stopping early.

:func:`split_corrections` sets aside one corrected object in
:data:`HOLD_OUT_EVERY` of each image (at least one from every image with two
or more corrected objects) with a margin of one object diameter around it;
those pixels no longer train.  With fewer corrected objects than that in
all, nothing can be spared: everything trains and is also what the model is
scored on, and the record says so (``shared``).

:class:`SnapshotSelector` scores the parent and the weights being trained
every :data:`SCORE_EVERY` steps on the held-out reviewed pixels (AP@0.5 and
foreground IoU, :mod:`~napari_unet.core.evaluation.metrics`), keeps the best
snapshot and says when to stop: after :data:`PATIENCE` scorings without
improvement, once at least half the steps are done (a model new to the kind
of image may score nothing for a while before it learns).  :func:`train_validated` runs the training loop that way; the
widget's fine-tuning and ``napari-unet train --from`` both go through it.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from napari_unet.core.config import InferenceConfig, TrainingConfig
from napari_unet.core.evaluation.metrics import average_precision, foreground_iou
from napari_unet.core.io.provenance import held_out_validation, trained_model
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.progress import Progress, run
from napari_unet.core.training.corrections import REVIEW_MARGIN_MIN, Correction

if TYPE_CHECKING:
    from napari_unet.core.training.samples import TrainingSample

HOLD_OUT_EVERY = 5
"""One corrected object in this many is set aside to score the fine-tuned model."""
SCORE_EVERY = 20
"""Training steps between two scorings on the held-out corrections (and at the last step)."""
PATIENCE = 2
"""Scorings in a row without improvement after which training stops."""
OBJECTS_MARGIN = 2
"""A version beats its parent when its AP@0.5 on the held-out corrections is higher by at least
this many objects' worth (``OBJECTS_MARGIN / held-out objects``).  One object more or less is
chance: fine-tuning ``nuclei`` on one fluorescence image with 5 held-out nuclei took AP@0.5
there from 0.59 to 0.73 while it fell from 0.846 to 0.823 on the 57 validation images
(``benchmarks/learning_curve.py --kind fluorescence``)."""
IOU_MARGIN = 0.02
"""At an AP@0.5 no lower, a version beats its parent when its foreground IoU is at least this much higher."""
CONTEXT_MIN = 32
"""Pixels of image kept around a held-out region when it is segmented (at least two diameters)."""


@dataclass(frozen=True)
class HeldOutPlane:
    """A crop of one corrected plane around its held-out objects.

    Attributes
    ----------
    name : str
    image : ndarray, shape (Y, X) or (C, Y, X)
    labels : ndarray of int, shape (Y, X)
        The person's labels.
    region : ndarray of bool, shape (Y, X)
        The held-out reviewed pixels: only these are scored.
    diameter : float or None
        Median object diameter of the plane's labels: the model segments at that size.
    objects : int
        Held-out objects (neighbours within the margin are scored too, where reviewed).

    """

    name: str
    image: NDArray[Any]
    labels: NDArray[np.int32]
    region: NDArray[np.bool_]
    diameter: float | None
    objects: int


@dataclass(frozen=True)
class ValidationSplit:
    """Corrections to train on, and what scores the result.

    Attributes
    ----------
    training : list of Correction
        With the held-out pixels marked (:attr:`Correction.held_out`).
    held_out : list of HeldOutPlane
    shared : bool
        Too few corrected objects to set some aside: the model is scored on
        what it trained on, which flatters it.

    """

    training: list[Correction]
    held_out: list[HeldOutPlane]
    shared: bool

    @property
    def objects(self) -> int:
        """Objects scored."""
        return sum(plane.objects for plane in self.held_out)


def corrected_objects(correction: Correction) -> NDArray[np.int64]:
    """Ids of the objects a person drew or checked: all objects of a fully reviewed plane, else the painted ones."""
    labels = np.asarray(correction.labels)
    where = np.ones(labels.shape, bool) if correction.fully_reviewed else np.asarray(correction.edited, bool)
    ids = np.unique(labels[where])
    return ids[ids > 0].astype(np.int64)


def _held_out_plane(correction: Correction, ids: NDArray[np.int64], mask: NDArray[np.bool_]) -> HeldOutPlane:
    from napari_unet.core.segmentation.sizing import median_diameter  # imports torch

    labels = np.asarray(correction.labels)
    diameter = median_diameter(labels)
    margin = max(REVIEW_MARGIN_MIN, diameter or 0.0)
    if ids.size:
        region = (ndi.distance_transform_edt(~np.isin(labels, ids)) <= margin) & mask
    else:  # a plane reviewed as empty: all of it
        region = mask.copy()
    context = max(CONTEXT_MIN, 2 * (diameter or 0.0))
    rows, columns = np.nonzero(region)
    y0, y1 = max(0, int(rows.min() - context)), min(labels.shape[0], int(rows.max() + context + 1))
    x0, x1 = max(0, int(columns.min() - context)), min(labels.shape[1], int(columns.max() + context + 1))
    return HeldOutPlane(
        name=correction.name,
        image=np.asarray(correction.image)[..., y0:y1, x0:x1],
        labels=labels[y0:y1, x0:x1],
        region=region[y0:y1, x0:x1],
        diameter=diameter,
        objects=int(ids.size),
    )


def split_corrections(corrections: list[Correction], every: int = HOLD_OUT_EVERY) -> ValidationSplit:
    """Set aside one corrected object in ``every`` of each image (see the module docstring).

    Parameters
    ----------
    corrections : list of Correction
        Those with no pixel that trains are left out.
    every : int

    Returns
    -------
    ValidationSplit

    """
    usable = [(c, c.mask) for c in corrections]
    usable = [(c, mask) for c, mask in usable if mask.any()]
    objects = [corrected_objects(c) for c, _ in usable]
    training: list[Correction] = []
    held_out: list[HeldOutPlane] = []
    if sum(len(ids) for ids in objects) >= every:
        for (correction, mask), ids in zip(usable, objects, strict=True):
            if len(ids) < 2:  # its only object trains
                training.append(correction)
                continue
            chosen = ids[every // 2 :: every] if len(ids) >= every else ids[len(ids) // 2 :][:1]
            plane = _held_out_plane(correction, chosen, mask)
            held_out.append(plane)
            full = np.zeros(mask.shape, bool)
            full[np.isin(correction.labels, chosen)] = True
            margin = max(REVIEW_MARGIN_MIN, plane.diameter or 0.0)
            training.append(replace(correction, held_out=ndi.distance_transform_edt(~full) <= margin))
    if not held_out:
        training = [c for c, _ in usable]
        held_out = [_held_out_plane(c, ids, mask) for (c, mask), ids in zip(usable, objects, strict=True)]
        return ValidationSplit(training, held_out, shared=True)
    return ValidationSplit(training, held_out, shared=False)


def labelled_split(pairs: list[tuple[str, Any, Any]], every: int = HOLD_OUT_EVERY) -> ValidationSplit:
    """:func:`split_corrections` for labelled images (every pixel reviewed), as ``napari-unet train --from`` reads them."""
    corrections = [
        Correction(name, (), image, np.asarray(labels, np.int32), np.zeros(np.shape(labels), bool), True)
        for name, image, labels in pairs
    ]
    return split_corrections(corrections, every)


def score(bundle: ModelBundle, held_out: list[HeldOutPlane], device: str = "auto") -> dict[str, float]:
    """AP@0.5 (pooled) and foreground IoU (mean over planes) of ``bundle`` on the held-out reviewed pixels."""
    from napari_unet.core.segmentation.segmenter import Segmenter  # imports torch

    true, predicted = [], []
    for plane in held_out:
        segmenter = Segmenter(bundle, InferenceConfig(device=device, diameter=plane.diameter))
        axes = "CYX" if plane.image.ndim == 3 else "YX"
        labels = run(segmenter.segment(plane.image, axes=axes)).labels
        true.append(np.where(plane.region, plane.labels, 0))
        predicted.append(np.where(plane.region, labels, 0))
    return {
        "ap50": float(average_precision(true, predicted, (0.5,))[0]),
        "foreground_iou": float(
            np.mean([foreground_iou(t, p) for t, p in zip(true, predicted, strict=True)])
        ),
    }


def _key(scores: dict[str, float]) -> tuple[float, float]:
    return round(scores["ap50"], 6), round(scores["foreground_iou"], 6)


@dataclass
class SnapshotSelector:
    """Scores the parent and the snapshots of a training on held-out corrections; keeps the best.

    One selector scores one training run (one round).

    Parameters
    ----------
    split : ValidationSplit
    device : str
    score_every : int
    patience : int

    Attributes
    ----------
    parent_scores : dict or None
        Set by :meth:`score_parent`.
    best : ModelBundle or None
        The best-scoring snapshot so far.
    best_scores : dict or None
    best_step : int
    history : list of dict
        ``{"step", "ap50", "foreground_iou"}`` per scoring.
    stale : int
        Scorings since the best one.

    """

    split: ValidationSplit
    device: str = "auto"
    score_every: int = SCORE_EVERY
    patience: int = PATIENCE
    parent_scores: dict[str, float] | None = None
    best: ModelBundle | None = None
    best_scores: dict[str, float] | None = None
    best_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    stale: int = 0
    _scored_at: int = 0

    def score_parent(self, parent: ModelBundle) -> dict[str, float]:
        """Score the model training starts from."""
        self.parent_scores = score(parent, self.split.held_out, self.device)
        return self.parent_scores

    def check(self, snapshot: ModelBundle, step: int, last: bool) -> dict[str, float]:
        """Score ``snapshot`` (every :attr:`score_every` steps and at the last); metrics for the progress record."""
        if not (last or step - self._scored_at >= self.score_every):
            return {}
        self._scored_at = step
        scores = score(snapshot, self.split.held_out, self.device)
        self.history.append({"step": step, **scores})
        if self.best_scores is None or _key(scores) > _key(self.best_scores):
            self.best, self.best_scores, self.best_step, self.stale = snapshot, scores, step, 0
        else:
            self.stale += 1
        return {f"held_out_{name}": value for name, value in scores.items()}

    @property
    def should_stop(self) -> bool:
        """Whether the scores stopped improving (:attr:`patience` scorings without a better one)."""
        return self.stale >= self.patience

    @property
    def better(self) -> bool:
        """Whether the best snapshot beats the parent on the held-out corrections.

        An AP@0.5 higher by :data:`OBJECTS_MARGIN` held-out objects' worth beats;
        so does, at an AP@0.5 no lower, a foreground IoU higher by at least
        :data:`IOU_MARGIN`.  Smaller gains are chance, not a reason to switch.
        """
        if self.best_scores is None or self.parent_scores is None:
            return False
        (ap, iou), (parent_ap, parent_iou) = _key(self.best_scores), _key(self.parent_scores)
        needed = OBJECTS_MARGIN / max(self.split.objects, 1)
        return ap >= parent_ap + needed - 1e-9 or (ap >= parent_ap and iou >= parent_iou + IOU_MARGIN - 1e-9)

    def record(self, steps: int) -> dict[str, Any]:
        """The provenance record of this validation (see :func:`~napari_unet.core.io.provenance.held_out_validation`)."""
        return held_out_validation(
            parent=self.parent_scores or {},
            kept=self.best_scores or {},
            kept_step=self.best_step,
            history=self.history,
            held_out=[plane.name for plane in self.split.held_out],
            objects=self.split.objects,
            shared=self.split.shared,
            steps=steps,
            better=self.better,
        )


def train_validated(
    bundle: ModelBundle,
    samples: list[TrainingSample],
    config: TrainingConfig,
    selector: SnapshotSelector,
    device: str = "auto",
    extra_validate: Any = None,
    provenance: dict[str, Any] | None = None,
) -> Generator[Progress, None, ModelBundle]:
    """Train a copy of ``bundle``, scored by ``selector``; return its best snapshot.

    The parent is scored first (if ``selector`` has not scored it yet);
    training stops early once :attr:`SnapshotSelector.should_stop`, but not
    before half of ``config.steps``.  The
    returned model's provenance is the training loop's, with
    ``held_out_validation`` added (parent and kept scores, the step kept, every scoring).

    Parameters
    ----------
    bundle : ModelBundle
        Where training starts (left untouched).
    samples : list of TrainingSample
    config : TrainingConfig
        Scorings fall on the first ``validate_every`` step at least ``selector.score_every``
        steps after the previous one, and on the last step.
    selector : SnapshotSelector
    device : str
    extra_validate : callable, optional
        Another validator (e.g. labelled validation folders) whose metrics are added.
    provenance : dict, optional
        Extra provenance for :func:`~napari_unet.core.io.provenance.trained_model`.

    """
    from napari_unet.core.training.loop import train  # imports torch

    if selector.parent_scores is None:
        yield Progress(0, config.steps, "scoring the starting model on the held-out corrections")
        selector.score_parent(bundle)
    started = time.perf_counter()
    step = 0

    def validate(current: ModelBundle) -> dict[str, float]:
        metrics = dict(extra_validate(current)) if extra_validate is not None else {}
        metrics.update(selector.check(current, step + 1, step + 1 == config.steps))
        return metrics

    training = train(bundle, samples, config, device=device, validate=validate, provenance=provenance)
    final: ModelBundle | None = None
    last: dict[str, float] = {}
    try:
        while True:
            try:
                record = next(training)
            except StopIteration as stop:
                final = stop.value
                break
            step = record.step
            last = record.metrics
            yield record
            if selector.should_stop and config.steps // 2 <= record.step < config.steps:
                yield Progress(
                    record.step,
                    record.step,
                    f"stopped at step {record.step}: no better on the held-out corrections since step "
                    f"{selector.best_step}",
                    record.metrics,
                )
                break
    finally:
        training.close()
    kept = selector.best if selector.best is not None else final
    if kept is None:
        raise RuntimeError("training produced no weights")
    if final is not None and kept is not final:
        kept.provenance = dict(final.provenance)
    elif final is None:
        kept.provenance = trained_model(
            bundle,
            replace(config, steps=step),
            [s.name for s in samples],
            time.perf_counter() - started,
            last.get("loss_smoothed"),
            {k: v for k, v in last.items() if k not in ("loss", "loss_smoothed", "lr")},
            extra=provenance,
        )
    kept.provenance["held_out_validation"] = selector.record(step)
    return kept


def describe(record: dict[str, Any], what: str = "your corrections") -> str:
    """One line comparing parent and result, e.g. ``your corrections: AP@0.5 0.61 → 0.83 (foreground IoU 0.70 → 0.80)``."""
    parent, kept = record.get("parent") or {}, record.get("kept") or {}
    if not parent or not kept:
        return f"{what}: not scored"
    line = (
        f"{what}: AP@0.5 {parent['ap50']:.2f} → {kept['ap50']:.2f} "
        f"(foreground IoU {parent['foreground_iou']:.2f} → {kept['foreground_iou']:.2f}; "
        f"{record.get('objects', 0)} held-out object(s))"
    )
    if record.get("shared"):
        line += "; too few corrected objects to set some aside, so scored on the ones it trained on"
    return line


def validation_of(bundle: ModelBundle) -> dict[str, Any] | None:
    """The held-out validation record of a fine-tuned model, if it has one."""
    record = bundle.provenance.get("held_out_validation")
    return record if isinstance(record, dict) else None


__all__ = [
    "HOLD_OUT_EVERY",
    "IOU_MARGIN",
    "OBJECTS_MARGIN",
    "PATIENCE",
    "SCORE_EVERY",
    "HeldOutPlane",
    "SnapshotSelector",
    "ValidationSplit",
    "corrected_objects",
    "describe",
    "labelled_split",
    "score",
    "split_corrections",
    "train_validated",
    "validation_of",
]
