"""How a fine-tune on corrections changes AP@0.5, over several seeds (no GUI needed).

``correction_loop.py`` runs the loop once through the widget: one draw.  This
script repeats the machine part of it with different training seeds, to show
the spread.  It segments the first image, picks the worst true objects, erases
every prediction overlapping them and paints back every true object the erasing
uncovered (what ``correction_loop.py``'s "person" does with napari's tools),
and fine-tunes the model on that correction with the widget's job and settings
(:class:`~napari_unet.core.training.finetune.FineTuneJob`,
:func:`~napari_unet.core.training.finetune.fine_tune_config`).  Two
controls use the same settings on fully reviewed images:

- **whole image, ground truth**: the first image's true labels everywhere (a
  perfect, complete correction);
- **whole image, own labels**: the model's own labels everywhere (nothing to
  learn: a change in AP here comes from moving the weights, not from the data);

and one without training: **weights × (1 + 10⁻⁴ noise)**, every weight changed by
0.01 % at random, which shows how much AP moves when the weights barely move.

Prints AP@0.5 (counts pooled over the images) on the corrected image and on the held-out images,
before and after: the mean over seeds and the range.

Usage::

    python benchmarks/finetune_spread.py [--model phase-cells] [--seeds 5] [--objects 10] [--steps 100]
"""

from __future__ import annotations

import argparse
import copy
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch

from _common import machine, spread
from correction_loop import add_loop_arguments, correction_plan, worst_objects
from napari_unet.core.config import InferenceConfig, TrainingConfig
from napari_unet.core.evaluation.metrics import summarise
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import segment_array
from napari_unet.core.training.corrections import Correction, CorrectionSet, CorrectionStore
from napari_unet.core.training.finetune import FINE_TUNE_PRESET, FineTuneJob, fine_tune_config


def corrected(
    predicted: np.ndarray, truth: np.ndarray, object_ids: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and edited mask after fixing ``object_ids`` as ``correction_loop.correct`` does."""
    labels = predicted.astype(np.int32).copy()
    erased, redrawn = correction_plan(predicted, truth, object_ids)
    labels[erased] = 0
    painted = np.isin(truth, redrawn)
    next_id = int(labels.max()) + 1
    for offset, object_id in enumerate(redrawn):
        labels[truth == object_id] = next_id + offset
    return labels, erased | painted


def fine_tune(parent: ModelBundle, correction: Correction, config: TrainingConfig) -> ModelBundle:
    """The widget's fine-tune job on one correction (kept in memory, not saved)."""
    corrections = CorrectionSet(CorrectionStore())
    corrections.update(correction, save=False)
    return run(FineTuneJob(parent, corrections, config, device="cpu").run())


def perturbed(parent: ModelBundle, relative: float, seed: int) -> ModelBundle:
    """A copy of ``parent`` with every weight multiplied by ``1 + relative * N(0, 1)``."""
    bundle = copy.deepcopy(parent)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in bundle.network.parameters():
            parameter.mul_(1 + relative * torch.randn(parameter.shape, generator=generator))
    return bundle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_loop_arguments(parser)
    parser.add_argument(
        "--steps", type=int, default=FINE_TUNE_PRESET.steps, help="fine-tuning steps (default: the widget's)"
    )
    parser.add_argument("--seeds", type=int, default=5, help="training seeds per correction (default 5)")
    parser.add_argument("--batch-size", type=int, help="crops per step (default: the widget's)")
    parser.add_argument("--crop-size", type=int, help="crop edge in pixels (default: the widget's)")
    parser.add_argument("--corrections-only", action="store_true", help="skip the two whole-image controls")
    args = parser.parse_args()

    names = sorted(p.name for p in Path(args.images).glob("*.tif"))
    if len(names) < 2:
        raise SystemExit(f"{args.images}: need at least two images (the first is corrected)")
    images = [tifffile.imread(Path(args.images) / n) for n in names]
    truths = [tifffile.imread(Path(args.labels) / n) for n in names]
    parent = load_model(resolve_model(args.model))

    def score(bundle: ModelBundle) -> tuple[float, float]:
        predicted = [
            segment_array(im, bundle, inference=InferenceConfig(device="cpu")).labels for im in images
        ]
        return summarise(truths[:1], predicted[:1])["ap50"], summarise(truths[1:], predicted[1:])["ap50"]

    own = segment_array(images[0], parent, inference=InferenceConfig(device="cpu")).labels
    fixed, edited = corrected(own, truths[0], worst_objects(truths[0], own, args.objects))
    kinds = {
        f"{args.objects} worst objects fixed": Correction("spread", (), images[0], fixed, edited),
        "whole image, ground truth": Correction(
            "spread",
            (),
            images[0],
            truths[0].astype(np.int32),
            np.zeros(own.shape, bool),
            fully_reviewed=True,
        ),
        "whole image, own labels": Correction(
            "spread", (), images[0], own.astype(np.int32), np.zeros(own.shape, bool), fully_reviewed=True
        ),
    }
    if args.corrections_only:
        kinds = dict(list(kinds.items())[:1])
    sizes = {k: v for k, v in (("batch_size", args.batch_size), ("crop_size", args.crop_size)) if v}
    config = fine_tune_config(args.steps, device="cpu", **sizes)
    options = {
        k: getattr(config, k) for k in ("batch_size", "crop_size", "learning_rate", "freeze_norm", "steps")
    }
    before = score(parent)
    print(
        f"machine: {machine()}\nmodel {args.model}; corrected image {names[0]}, held out: {len(names) - 1} images; "
        f"fine-tuned with {options}; seeds 0-{args.seeds - 1}\n"
    )
    print(
        "| correction | corrected image: before | after, mean (range) | held out: before | after, mean (range) |"
    )
    print("|---|---|---|---|---|")
    runs = {
        kind: (lambda seed, correction=correction: fine_tune(parent, correction, replace(config, seed=seed)))
        for kind, correction in kinds.items()
    }
    runs["weights × (1 + 10⁻⁴ noise), no training"] = lambda seed: perturbed(parent, 1e-4, seed)
    for kind, model in runs.items():
        after = [score(model(seed)) for seed in range(args.seeds)]
        cells = []
        for column in (0, 1):
            values = [a[column] for a in after]
            cells += [f"{before[column]:.3f}", spread(values)]
        print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)
    print(f"\n{os.cpu_count()} cores; AP@0.5 pools each group's images.")


if __name__ == "__main__":
    main()
