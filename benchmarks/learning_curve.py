"""Learning curve of correct-and-retrain: held-out AP@0.5 after correcting 1, 2, 4, 8 images.

A person corrects images one after another and presses Fine-tune after each, with the
widget's job and preset (:class:`~napari_unet.core.training.finetune.FineTuneJob`,
:func:`~napari_unet.core.training.finetune.fine_tune_config`): the model is trained on all
corrections so far, from the model the previous round kept.  How a person corrects:

- ``complete``: every object of the image checked and fixed (the true labels, every pixel
  reviewed);
- ``uncertain``: only the ``--objects`` objects the model is least sure of
  (:func:`~napari_unet.core.segmentation.uncertainty.rank_plane`) are fixed, each
  erased and the true objects it covers painted back, as ``uncertainty_guided.py``'s person does.

After each round, the kept model segments the held-out images (images of the same kind,
never corrected) and AP@0.5 is printed against the number of corrected objects and the
minutes the fine-tuning took (wall clock on the machine that runs it; CPU time in brackets).
Every number is for one training seed (``--seed``); ``weight_noise.py`` gives the band
within which AP moves when the weights barely move.

Two settings the fine-tuning issue asks for:

1. a kind of image the starting model was not trained on — ``nuclei`` (fluorescence) on
   grey brightfield nuclei, the default: corrected images from
   ``nuclei-dsb2018-other/train``, held out the other grey images (its validation split and
   the training images not corrected);
2. the kind it was trained on — ``--kind fluorescence``: ``nuclei`` on ``nuclei-dsb2018``,
   corrected training images, held out the 57 validation images (where ``weight_noise.py``
   measures its band).

Usage::

    python benchmarks/learning_curve.py [--kind brightfield|fluorescence] [--counts 1 2 4 8]
        [--mode complete|uncertain] [--objects 10] [--model nuclei] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from _common import DATA, machine, table
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.training.corrections import Correction, CorrectionSet, CorrectionStore
from napari_unet.core.training.finetune import FineTuneJob, fine_tune_config
from uncertainty_guided import fix_objects, held_out_ap, segment_and_rank

Pair = tuple[str, np.ndarray, np.ndarray]


def grey(pairs: list[Pair]) -> list[Pair]:
    return [pair for pair in pairs if pair[1].ndim == 2]


def kinds() -> dict[str, Callable[[], tuple[list[Pair], list[Pair]]]]:
    """``{kind: () -> (images to correct, held-out images)}``."""

    def brightfield() -> tuple[list[Pair], list[Pair]]:
        folder = DATA / "nuclei-dsb2018-other"
        train = grey(read_labelled_folder(folder / "train" / "images", folder / "train" / "labels"))
        val = grey(read_labelled_folder(folder / "val" / "images", folder / "val" / "labels"))
        return train[:8], val + train[8:]

    def fluorescence() -> tuple[list[Pair], list[Pair]]:
        folder = DATA / "nuclei-dsb2018"
        train = read_labelled_folder(folder / "train" / "images", folder / "train" / "labels")
        val = read_labelled_folder(folder / "val" / "images", folder / "val" / "labels")
        return train[:8], val

    return {"brightfield": brightfield, "fluorescence": fluorescence}


def correction(
    name: str, image: np.ndarray, truth: np.ndarray, bundle: ModelBundle, mode: str, objects: int
) -> tuple[Correction, int]:
    """The person's correction of one image and the number of objects it fixed."""
    if mode == "complete":
        labels = truth.astype(np.int32)
        correction = Correction(name, (), image, labels, np.zeros(truth.shape, bool), fully_reviewed=True)
        return correction, len(np.unique(truth)) - 1
    segmented = segment_and_rank(bundle, name, image, truth)
    chosen = [entry.label for entry in segmented.ranking[:objects]]
    labels, edited, _ = fix_objects(segmented.predicted, segmented.truth, chosen)
    return Correction(name, (), image, labels, edited), len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=sorted(kinds()), default="brightfield")
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8], help="images corrected")
    parser.add_argument("--mode", choices=["complete", "uncertain"], default="complete")
    parser.add_argument("--objects", type=int, default=10, help="objects fixed per image in uncertain mode")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    to_correct, held_out = kinds()[args.kind]()
    parent = load_model(resolve_model(args.model))
    config = fine_tune_config(device="cpu", seed=args.seed)
    print(f"machine: {machine()}")
    print(
        f"{args.model} on {args.kind}: correct up to {max(args.counts)} of {len(to_correct)} images "
        f"({args.mode}), held out {len(held_out)} images; widget preset: {config.steps} steps, batch "
        f"{config.batch_size}, crop {config.crop_size}, lr {config.learning_rate}\n"
    )
    rows = [["0", "0", f"{held_out_ap(parent, held_out):.3f}", "0.0", "-"]]
    corrections = CorrectionSet(CorrectionStore())
    model, objects_fixed, wall, cpu = parent, 0, 0.0, 0.0
    for index, (name, image, truth) in enumerate(to_correct[: max(args.counts)], start=1):
        fixed, count = correction(Path(name).stem, image, truth, model, args.mode, args.objects)
        corrections.update(fixed, save=False)
        objects_fixed += count
        started, started_cpu = time.perf_counter(), time.process_time()
        tuned = run(FineTuneJob(model, corrections, config, device="cpu").run())
        wall += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        # as in the widget: a version that does not beat its parent on the held-out corrections is saved
        # but not selected, and the next Fine-tune starts from the selected model
        better = tuned.provenance.get("held_out_validation", {}).get("better", True)
        model = tuned if better else model
        if index in args.counts:
            kept = "new version" if better else "parent kept"
            rows.append(
                [
                    str(index),
                    str(objects_fixed),
                    f"{held_out_ap(model, held_out):.3f}",
                    f"{wall / 60:.1f} ({cpu / 60:.1f})",
                    kept,
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(
        table(
            [
                "images corrected",
                "objects corrected",
                "held-out AP@0.5",
                "fine-tune minutes (CPU)",
                "verdict",
            ],
            rows,
        )
    )


if __name__ == "__main__":
    main()
