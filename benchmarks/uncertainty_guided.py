"""Does correcting the most uncertain objects pay? Held-out AP@0.5 after fixing k objects, chosen two ways.

A person segments an image, fixes k of its objects and presses Fine-tune (the widget's
job and preset: :class:`~napari_unet.core.training.finetune.FineTuneJob`,
:func:`~napari_unet.core.training.finetune.fine_tune_config`).  The k objects are

- ``uncertain``: the k most uncertain predicted objects, as "Next uncertain object" shows
  them (:func:`~napari_unet.core.segmentation.uncertainty.rank_plane`: the network on the
  image and its mirror images);
- ``random``: k predicted objects drawn at random (one draw per seed).

How the person fixes a predicted object (:func:`fix_objects`): it is erased, and the true
objects it stands for are painted in whole from the ground truth -- those it covers at
least half of (a merge: all of them) and the one it overlaps best (a fragment: the whole
object it is part of).  A false detection overlapping no true object is only erased (and
erased pixels teach nothing unless a plane is marked fully reviewed, as in the widget).
A fixed object that was right is painted over with its true outline: a person who looked
at it and touched it up.  True objects the model missed altogether are not added: no
prediction points to them, in either arm.

The first ``--corrected`` images of the folder are corrected (k objects each), the others
are held out.  For each k and seed, both arms fine-tune with training seed ``seed``; the
held-out images are segmented with the result and AP@0.5 pooled over them.  Printed:
held-out AP@0.5 before and after, mean (min-max) over seeds; the share of fixed objects
that were wrong (no true object with IoU >= 0.5) and the true objects painted; CPU minutes
(process time of all threads: ranking, fine-tuning, scoring).  ``weight_noise.py`` gives
how much AP moves when the weights barely move.

``--rank-only`` skips the fine-tuning: on every image of the folder it ranks the objects
and prints how well the uncertainty (and each of its terms) finds the wrong ones -- the
area under the ROC curve, and the share of wrong objects among each image's k most
uncertain against the share among all.

Usage::

    python benchmarks/uncertainty_guided.py [--model phase-cells] [--images … --labels …]
        [--corrected 1] [--k 5 10 20] [--seeds 5] [--steps 100] [--held-out N] [--rank-only]

A quick check that it runs (numbers not worth quoting)::

    python benchmarks/uncertainty_guided.py --corrected 1 --held-out 1 --k 2 --seeds 1 --steps 2
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from _common import PHASE_VAL, machine, spread, table
from napari_unet.core.config import InferenceConfig, TrainingConfig
from napari_unet.core.evaluation.evaluate import evaluate_bundle
from napari_unet.core.evaluation.metrics import iou_matrix, overlap_matrix
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import Segmenter
from napari_unet.core.segmentation.uncertainty import TERMS, UncertainObject, rank_plane
from napari_unet.core.training.corrections import Correction, CorrectionSet, CorrectionStore
from napari_unet.core.training.finetune import FINE_TUNE_PRESET, FineTuneJob, fine_tune_config

ARMS = ("uncertain", "random")


@dataclass
class Segmented:
    """One image, its true labels, the model's labels and their ranking (most uncertain first)."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    predicted: np.ndarray
    ranking: list[UncertainObject]


def segment_and_rank(bundle: ModelBundle, name: str, image: np.ndarray, truth: np.ndarray) -> Segmented:
    """Segment ``image`` as the widget does (no flips) and rank its objects as the button does."""
    segmenter = Segmenter(bundle, InferenceConfig(device="cpu"))
    result = run(segmenter.segment(image, axes="CYX" if image.ndim == 3 else "YX"))
    scale = segmenter.scale_for(result.diameter)
    ranking = run(rank_plane(segmenter, image, result.labels, scale))
    return Segmented(name, image, truth.astype(np.int32), result.labels, ranking)


def wrong_objects(predicted: np.ndarray, truth: np.ndarray) -> set[int]:
    """Predicted ids without a true object at IoU >= 0.5."""
    ids = np.unique(predicted)
    iou = iou_matrix(truth, predicted)  # (true objects, predicted objects), background left out
    best = iou.max(axis=0) if iou.shape[0] else np.zeros(iou.shape[1])
    return {int(i) for i, b in zip(ids[ids > 0], best, strict=True) if b < 0.5}


def fix_objects(
    predicted: np.ndarray, truth: np.ndarray, chosen: list[int]
) -> tuple[np.ndarray, np.ndarray, int]:
    """The labels and edited pixels after a person fixes the predicted objects ``chosen``.

    Each chosen object is erased; the true objects it covers at least half of, and the one
    it overlaps best, are painted in whole with new ids.  Returns (labels, edited, number
    of true objects painted).
    """
    overlap = overlap_matrix(truth, predicted)
    true_ids, predicted_ids = np.unique(truth), np.unique(predicted)
    if true_ids[0] != 0:
        true_ids = np.r_[0, true_ids]
    if predicted_ids[0] != 0:
        predicted_ids = np.r_[0, predicted_ids]
    true_area, predicted_area = overlap.sum(axis=1), overlap.sum(axis=0)
    labels = predicted.astype(np.int32).copy()
    edited = np.zeros(predicted.shape, bool)
    painted: set[int] = set()
    next_id = int(labels.max()) + 1
    for label in chosen:
        column = int(np.searchsorted(predicted_ids, label))
        shared = overlap[1:, column]
        covered = set(np.flatnonzero(shared * 2 >= true_area[1:]) + 1)
        iou = shared / (true_area[1:] + predicted_area[column] - shared)
        if shared.any():
            covered.add(int(np.argmax(iou)) + 1)
        mine = predicted == label
        labels[mine & (labels == label)] = 0
        edited |= mine
        for row in sorted(covered - {0}):
            mask = truth == true_ids[row]
            labels[mask] = next_id
            edited |= mask
            next_id += 1
            painted.add(int(true_ids[row]))
    return labels, edited, len(painted)


def choose(item: Segmented, arm: str, k: int, seed: int) -> list[int]:
    """The k predicted objects a person fixes in ``arm``."""
    if arm == "uncertain":
        return [entry.label for entry in item.ranking[:k]]
    ids = np.unique(item.predicted)
    ids = ids[ids > 0]
    rng = np.random.default_rng([seed, k, sum(map(ord, item.name))])
    return [int(i) for i in rng.choice(ids, size=min(k, ids.size), replace=False)]


def fine_tune(parent: ModelBundle, corrections: list[Correction], config: TrainingConfig) -> ModelBundle:
    """The widget's fine-tune job on ``corrections`` (kept in memory, not saved)."""
    corrected = CorrectionSet(CorrectionStore())
    for correction in corrections:
        corrected.update(correction, save=False)
    return run(FineTuneJob(copy.deepcopy(parent), corrected, config, device="cpu").run())


def held_out_ap(bundle: ModelBundle, pairs: list[tuple[str, np.ndarray, np.ndarray]]) -> float:
    """AP@0.5 of ``bundle`` on ``pairs``, pooled, as ``napari-unet evaluate`` scores it."""
    return evaluate_bundle(bundle, pairs, inference=InferenceConfig(device="cpu"))["ap50"]


def auroc(wrong: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for telling wrong objects (ties count half)."""
    positives, negatives = int(wrong.sum()), int((~wrong).sum())
    if not positives or not negatives:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[wrong].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def rank_only(bundle: ModelBundle, pairs: list[tuple[str, np.ndarray, np.ndarray]], ks: list[int]) -> None:
    """How well the ranking finds wrong objects, on every image (no training)."""
    started = time.process_time()
    rows: list[tuple[bool, float, dict[str, float]]] = []
    top: dict[int, list[int]] = {k: [0, 0] for k in ks}
    for name, image, truth in pairs:
        item = segment_and_rank(bundle, name, image, truth)
        wrong = wrong_objects(item.predicted, item.truth)
        for position, entry in enumerate(item.ranking):
            rows.append((entry.label in wrong, entry.score, entry.terms))
            for k in ks:
                if position < k:
                    top[k][0] += entry.label in wrong
                    top[k][1] += 1
    is_wrong = np.array([row[0] for row in rows])
    print(
        f"{len(pairs)} images, {len(rows)} predicted objects, {int(is_wrong.sum())} wrong "
        f"({is_wrong.mean():.1%}: no true object at IoU >= 0.5); {(time.process_time() - started) / 60:.1f} CPU min\n"
    )
    scores = {"uncertainty (mean of the terms)": np.array([row[1] for row in rows])}
    for term in TERMS:
        scores[f"{term} term alone"] = np.array([row[2].get(term, np.nan) for row in rows])
    print(
        table(
            ["score", "AUROC for wrong objects"],
            [(n, f"{auroc(is_wrong, s):.3f}") for n, s in scores.items()],
        )
    )
    print()
    print(
        table(
            ["k most uncertain per image", "wrong among them", "wrong among all objects"],
            [
                (k, f"{hit / max(seen, 1):.1%} ({hit} of {seen})", f"{is_wrong.mean():.1%}")
                for k, (hit, seen) in top.items()
            ],
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="phase-cells", help="model name or file (default phase-cells)")
    parser.add_argument("--images", default=str(PHASE_VAL / "images"), help="folder of images")
    parser.add_argument("--labels", default=str(PHASE_VAL / "labels"), help="their instance labels")
    parser.add_argument(
        "--corrected", type=int, default=1, help="images corrected (the first ones; default 1)"
    )
    parser.add_argument("--held-out", type=int, help="held-out images used (default: all the others)")
    parser.add_argument("--k", type=int, nargs="+", default=[5, 10, 20], help="objects fixed per image")
    parser.add_argument("--seeds", type=int, default=5, help="random draws and training seeds (default 5)")
    parser.add_argument("--steps", type=int, default=FINE_TUNE_PRESET.steps, help="fine-tuning steps")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--rank-only", action="store_true", help="only measure the ranking, on every image")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    pairs = read_labelled_folder(args.images, args.labels)
    parent = load_model(resolve_model(args.model))
    print(f"machine: {machine()}\nmodel {args.model}; images {args.images}\n")
    if args.rank_only:
        rank_only(parent, pairs, args.k)
        return
    corrected_pairs = pairs[: args.corrected]
    held_out = pairs[args.corrected :][: args.held_out]
    if not corrected_pairs or not held_out:
        raise SystemExit(f"{args.images}: need images to correct and images to hold out ({len(pairs)} found)")

    started = time.process_time()
    items = [segment_and_rank(parent, *pair) for pair in corrected_pairs]
    ranking_minutes = (time.process_time() - started) / 60
    before = held_out_ap(parent, held_out)
    config = fine_tune_config(args.steps, device="cpu")
    print(
        f"corrected: {', '.join(i.name for i in items)} ({sum(len(i.ranking) for i in items)} "
        f"predicted objects); held out: {len(held_out)} images; fine-tuned with the widget's preset, "
        f"{config.steps} steps; seeds 0-{args.seeds - 1}\n"
        f"ranking the corrected images' objects (4 network passes each): {ranking_minutes:.2f} CPU min\n"
    )
    rows = []
    for k in args.k:
        after: dict[str, list[float]] = {arm: [] for arm in ARMS}
        wrong_share: dict[str, list[float]] = {arm: [] for arm in ARMS}
        painted: dict[str, list[int]] = {arm: [] for arm in ARMS}
        minutes: dict[str, float] = {arm: 0.0 for arm in ARMS}
        for seed in range(args.seeds):
            for arm in ARMS:
                run_started = time.process_time()
                corrections, fixed, wrong, drawn = [], 0, 0, 0
                for item in items:
                    chosen = choose(item, arm, k, seed)
                    labels, edited, count = fix_objects(item.predicted, item.truth, chosen)
                    corrections.append(Correction(item.name, (), item.image, labels, edited))
                    fixed += len(chosen)
                    wrong += len(set(chosen) & wrong_objects(item.predicted, item.truth))
                    drawn += count
                model = fine_tune(parent, corrections, replace(config, seed=seed))
                after[arm].append(held_out_ap(model, held_out))
                wrong_share[arm].append(wrong / max(fixed, 1))
                painted[arm].append(drawn)
                minutes[arm] += (time.process_time() - run_started) / 60
        for arm in ARMS:
            rows.append(
                (
                    k,
                    arm,
                    f"{np.mean(wrong_share[arm]):.0%}",
                    f"{np.mean(painted[arm]):.1f}",
                    f"{before:.3f}",
                    spread(after[arm]),
                    f"{np.mean(after[arm]) - before:+.3f}",
                    f"{minutes[arm] / args.seeds:.1f}",
                )
            )
        print(f"k = {k} done", flush=True)
    print()
    header = [
        "k per image",
        "chosen",
        "wrong among them",
        "true objects painted",
        "held-out AP@0.5 before",
        "after, mean (range)",
        "change",
        "CPU min per run",
    ]
    print(table(header, rows))
    print(
        f"\nCPU minutes in all: {(time.process_time() - started) / 60:.1f}; images under {Path(args.images)}"
    )


if __name__ == "__main__":
    main()
