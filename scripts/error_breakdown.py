"""Count a model's errors by kind on a labelled folder.

A true object is *split* when two or more predictions each cover over 20 % of it, *missed* when
predictions cover under 20 % of it; a prediction *joins* objects when it covers over 20 % of two
or more, and is *spurious* when true objects cover under 20 % of it.  Matches are IoU > 0.5.

Usage: python scripts/error_breakdown.py MODEL IMAGES LABELS [--pattern GLOB] [--worst N]
"""

from __future__ import annotations

import argparse

import numpy as np

from napari_unet.core.config import InferenceConfig
from napari_unet.core.evaluation.metrics import overlap_matrix
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.segmenter import segment_array

KINDS = ("true", "predicted", "matched", "split", "joined", "missed", "spurious")


def breakdown(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """Error counts of one image (see the module docstring)."""
    overlap = overlap_matrix(truth, pred)
    true_area, pred_area = overlap.sum(1), overlap.sum(0)
    inner = overlap[1:, 1:]
    iou = inner / (true_area[1:, None] + pred_area[None, 1:] - inner)
    cover_true = inner / true_area[1:, None]
    cover_pred = inner / pred_area[None, 1:]
    return {
        "true": inner.shape[0],
        "predicted": inner.shape[1],
        "matched": int((iou > 0.5).sum()),
        "split": int(((cover_true > 0.2).sum(1) >= 2).sum()),
        "joined": int(((cover_pred > 0.2).sum(0) >= 2).sum()),
        "missed": int((cover_true.sum(1) < 0.2).sum()),
        "spurious": int((cover_pred.sum(0) < 0.2).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("labels")
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--worst", type=int, default=5, help="list the N images with the lowest AP@0.5")
    args = parser.parse_args()
    bundle = load_model(resolve_model(args.model))
    total = dict.fromkeys(KINDS, 0)
    per_image = []
    for name, image, truth in read_labelled_folder(args.images, args.labels, args.pattern):
        counts = breakdown(
            truth,
            segment_array(
                image, bundle, axes="CYX" if image.ndim == 3 else "YX", inference=InferenceConfig()
            ).labels,
        )
        for kind in KINDS:
            total[kind] += counts[kind]
        errors = counts["true"] + counts["predicted"] - counts["matched"]
        per_image.append((counts["matched"] / max(1, errors), name, counts))
    print(" ".join(f"{kind} {total[kind]}" for kind in KINDS))
    for ap, name, counts in sorted(per_image, key=lambda row: row[0])[: args.worst]:
        print(f"  {name}: AP@0.5 {ap:.3f}", " ".join(f"{kind} {counts[kind]}" for kind in KINDS))


if __name__ == "__main__":
    main()
