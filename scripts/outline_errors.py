"""What limits a model's outlines: where matched objects' pixels go wrong, and what would fix it.

For every object matched at IoU > 0.5 it reports the IoU quantiles and the share above 0.75
(the objects AP@0.75 counts), and where the misplaced pixels lie: predicted over the
background or over another true object, missed to the background or to another predicted
object.  Then it scores AP@0.5 and AP@0.75 with four candidate fixes applied to the same
predictions, so that a fix is chosen by what it measurably gains:

- ``true size``: each image segmented at its labels' median diameter instead of the
  estimated one (how much the size estimate costs; the ratio of the two is printed too);
- ``shift dy,dx``: the predictions moved by the global shift (within 2 px) that best matches
  the labels (whether labels are offset from their images);
- ``smooth σ``: each predicted object blurred with a Gaussian of σ px and thresholded at 0.5
  (whether jagged outlines cost IoU);
- ``grow 1`` / ``shrink 1``: each predicted object dilated or eroded by one pixel (whether
  outlines are biased outwards or inwards).

Usage::

    python scripts/outline_errors.py MODEL IMAGES LABELS [--pattern GLOB]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
from scipy import ndimage as ndi

from napari_unet.core.config import InferenceConfig
from napari_unet.core.evaluation.evaluate import predict_set
from napari_unet.core.evaluation.metrics import iou_matrix, summarise
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import Segmentation, Segmenter
from napari_unet.core.segmentation.sizing import median_diameter

Labels = np.ndarray


def misplaced_pixels(truth: Labels, pred: Labels) -> tuple[list[float], dict[str, int]]:
    """IoUs of the objects matched at IoU > 0.5, and where their misplaced pixels lie."""
    iou = iou_matrix(truth, pred)
    true_ids, pred_ids = (np.setdiff1d(np.unique(labels), [0]) for labels in (truth, pred))  # rows, columns
    where = dict.fromkeys(("extra over background", "extra over another object"), 0)
    where |= dict.fromkeys(("missed to background", "missed to another object"), 0)
    matched = []
    for true_index, pred_index in zip(*np.nonzero(iou > 0.5), strict=True):
        matched.append(float(iou[true_index, pred_index]))
        true_mask, pred_mask = truth == true_ids[true_index], pred == pred_ids[pred_index]
        extra, missed = truth[pred_mask & ~true_mask], pred[true_mask & ~pred_mask]
        where["extra over background"] += int((extra == 0).sum())
        where["extra over another object"] += int((extra > 0).sum())
        where["missed to background"] += int((missed == 0).sum())
        where["missed to another object"] += int((missed > 0).sum())
    return matched, where


def per_object(pred: Labels, change: Callable[[np.ndarray], np.ndarray]) -> Labels:
    """``pred`` with ``change`` applied to each object's mask (earlier labels keep contested pixels)."""
    out = np.zeros_like(pred)
    for label, box in enumerate(ndi.find_objects(pred), start=1):
        if box is None:
            continue
        box = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
        mask = change(pred[box] == label) & (out[box] == 0)
        out[box][mask] = label
    return out


def best_shift(truth: list[Labels], pred: list[Labels], reach: int = 2) -> tuple[int, int]:
    """The global (dy, dx) within ``reach`` px that maximises the pooled foreground overlap."""

    def overlap(dy: int, dx: int) -> int:
        return sum(
            int(((np.roll(p, (dy, dx), (0, 1)) > 0) & (t > 0)).sum())
            for t, p in zip(truth, pred, strict=True)
        )

    shifts = [(dy, dx) for dy in range(-reach, reach + 1) for dx in range(-reach, reach + 1)]
    return max(shifts, key=lambda shift: overlap(*shift))


def print_size_estimates(bundle: ModelBundle, truth: list[Labels], estimated: list[Segmentation]) -> None:
    """The estimated object size over the labels' median diameter, for objects smaller and larger than the model's."""
    rows = []
    for labels, segmentation in zip(truth, estimated, strict=True):
        true, estimate = median_diameter(labels), segmentation.diameter
        if true and estimate:
            rows.append((true, estimate / true))
    size = bundle.preprocess.object_diameter
    for name, keep in (("smaller than", lambda d: d < size), ("at least", lambda d: d >= size)):
        ratios = [ratio for true, ratio in rows if keep(true)]
        if ratios:
            print(
                f"size estimate / labels' median diameter, images with objects {name} the model's "
                f"{size:g} px: median {np.median(ratios):.3f} over {len(ratios)} images "
                f"(quartiles {np.quantile(ratios, 0.25):.3f}, {np.quantile(ratios, 0.75):.3f})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("labels")
    parser.add_argument("--pattern", default="*")
    args = parser.parse_args()
    bundle = load_model(resolve_model(args.model))
    pairs = read_labelled_folder(args.images, args.labels, args.pattern)
    truth = [labels for _, _, labels in pairs]
    segmenter = Segmenter(bundle, InferenceConfig())
    estimated = [  # as predict_set segments, keeping the diameter each image was segmented at
        run(segmenter.segment(image, axes="CYX" if image.ndim == 3 else "YX")) for _, image, _ in pairs
    ]
    pred = [segmentation.labels for segmentation in estimated]

    ious: list[float] = []
    where: dict[str, int] = {}
    for t, p in zip(truth, pred, strict=True):
        matched, counts = misplaced_pixels(t, p)
        ious += matched
        where = {key: where.get(key, 0) + value for key, value in counts.items()}
    quantiles = np.quantile(ious, [0.1, 0.25, 0.5, 0.75, 0.9]) if ious else np.zeros(5)
    print(f"{len(ious)} objects matched at IoU > 0.5; IoU > 0.75: {np.mean(np.array(ious) > 0.75):.1%}")
    print("IoU quantiles 10/25/50/75/90 %: " + " ".join(f"{q:.3f}" for q in quantiles))
    print("misplaced pixels of matched objects: " + ", ".join(f"{k} {v}" for k, v in where.items()))

    true_size = [
        predict_set(bundle, [pair], InferenceConfig(diameter=median_diameter(pair[2])))[0] for pair in pairs
    ]
    if bundle.preprocess.rescale:
        print_size_estimates(bundle, truth, estimated)
    shift = best_shift(truth, pred)
    candidates = {
        "as segmented": pred,
        "true size": true_size,
        f"shift {shift[0]},{shift[1]}": [np.roll(p, shift, (0, 1)) for p in pred],
        "smooth 1": [per_object(p, lambda m: ndi.gaussian_filter(m.astype(float), 1.0) > 0.5) for p in pred],
        "smooth 2": [per_object(p, lambda m: ndi.gaussian_filter(m.astype(float), 2.0) > 0.5) for p in pred],
        "grow 1": [per_object(p, ndi.binary_dilation) for p in pred],
        "shrink 1": [per_object(p, ndi.binary_erosion) for p in pred],
    }
    print("\n| predictions | AP@0.5 | AP@0.75 | foreground IoU |\n|---|---|---|---|")
    for name, labels in candidates.items():
        scores = summarise(truth, labels)
        print(f"| {name} | {scores['ap50']:.3f} | {scores['ap75']:.3f} | {scores['foreground_iou']:.3f} |")


if __name__ == "__main__":
    main()
