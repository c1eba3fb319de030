"""Choose a model's default post-processing thresholds on its *training* images.

Runs the network once per image (and join threshold, which moves the object-size
estimate), scores a grid of seed and foreground thresholds (and,
with ``--join-thresholds``, thresholds for joining objects cut in two) on the cached outputs (adapted Rand error for models that fill the image, AP@0.5 otherwise) and,
with ``--write``, stores the best as the model file's defaults (atomically), noting the
choice in its provenance.  Never point it at a validation split.

Usage: python scripts/tune_postprocessing.py MODEL_FILE IMAGES LABELS [--pattern GLOB]
       [--limit N] [--seeds S [S ...]] [--foregrounds P [P ...]] [--min-size PX | --min-sizes PX [PX ...]]
       [--join-thresholds T [T ...]] [--object-probabilities P [P ...]] [--write]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from typing import Any

from numpy.typing import NDArray

from napari_unet.core.config import PostprocessConfig, to_dict
from napari_unet.core.evaluation.metrics import summarise
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.files import save_model
from napari_unet.core.models.registry import load_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.segmenter import PlaneOutputs, Segmenter

SEEDS = (0.2, 0.3, 0.4, 0.5, 0.6)
FOREGROUNDS = (0.4, 0.5, 0.6)


def network_outputs(
    segmenter: Segmenter, images: list[NDArray[Any]], joins: list[float]
) -> dict[float, list[PlaneOutputs]]:
    """The network's outputs for each image, at the scale the model would segment it at, per join threshold.

    The object-size estimate measures objects with the model's join threshold
    (a nucleus cut in two would count as two small ones), so a different join
    threshold can move the estimate and the scale an image is segmented at.
    Scoring every join threshold on outputs at the scale of the model's current
    one would report numbers the written defaults do not give. Outputs are
    computed once per image and scale.
    """
    bundle = segmenter.bundle
    current = bundle.postprocess
    cache: dict[tuple[int, float], PlaneOutputs] = {}
    outputs: dict[float, list[PlaneOutputs]] = {}
    try:
        for join in joins:
            bundle.postprocess = dataclasses.replace(current, join_threshold=join)
            outputs[join] = []
            for index, image in enumerate(images):
                scale = segmenter.scale_for(segmenter.object_diameter(image))
                if (index, scale) not in cache:
                    cache[index, scale] = run(segmenter.predict_plane(image, scale))
                outputs[join].append(cache[index, scale])
    finally:
        bundle.postprocess = current
    return outputs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("images")
    parser.add_argument("labels")
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images")
    parser.add_argument("--seeds", type=float, nargs="+", default=SEEDS, help="seed thresholds to try")
    parser.add_argument(
        "--foregrounds", type=float, nargs="+", default=FOREGROUNDS, help="probability thresholds to try"
    )
    parser.add_argument("--min-size", type=int, help="also set the default minimum object size")
    parser.add_argument(
        "--min-sizes", type=int, nargs="+", help="also choose the minimum object size among these"
    )
    parser.add_argument(
        "--join-thresholds",
        type=float,
        nargs="+",
        help="also choose the join threshold among these (1 = off)",
    )
    parser.add_argument(
        "--object-probabilities",
        type=float,
        nargs="+",
        help="also choose the lowest mean probability an object keeps among these (0 = off)",
    )
    parser.add_argument("--write", action="store_true", help="store the best thresholds in the model file")
    args = parser.parse_args()
    bundle = load_model(args.model)
    if args.min_size is not None:
        bundle.postprocess = dataclasses.replace(bundle.postprocess, min_size=args.min_size)
    segmenter = Segmenter(bundle)
    pairs = read_labelled_folder(args.images, args.labels, args.pattern)
    if args.limit:
        pairs = pairs[: args.limit]
    truth = [labels for _, _, labels in pairs]
    fill = bundle.postprocess.fill_background
    results = []
    min_sizes = args.min_sizes or [bundle.postprocess.min_size]
    joins = args.join_thresholds or [bundle.postprocess.join_threshold]
    outputs_by_join = network_outputs(segmenter, [image for _, image, _ in pairs], joins)
    object_probabilities = args.object_probabilities or [bundle.postprocess.object_probability]
    print(
        f"| foreground | seed | min size | join | object probability | AP@0.5 | adapted Rand error |  "
        f"({args.model}, {len(pairs)} training images)"
    )
    print("|---|---|---|---|---|---|---|")
    grid = itertools.product(args.foregrounds, args.seeds, min_sizes, joins, object_probabilities)
    for foreground, seed, min_size, join, object_probability in grid:
        config = dataclasses.replace(
            bundle.postprocess,
            foreground_threshold=foreground,
            seed_threshold=seed,
            min_size=min_size,
            join_threshold=join,
            object_probability=object_probability,
        )
        metrics = summarise(truth, [segmenter.labels(o, config) for o in outputs_by_join[join]])
        results.append((metrics, config))
        print(
            f"| {foreground} | {seed} | {min_size} | {join} | {object_probability} | {metrics['ap50']:.3f} "
            f"| {metrics['adapted_rand_error']:.4f} |",
            flush=True,
        )
    if fill:
        best_metrics, best = min(results, key=lambda r: r[0]["adapted_rand_error"])
    else:
        best_metrics, best = max(results, key=lambda r: r[0]["ap50"])
    print(f"best: {to_dict(best)}")
    if args.write:
        bundle.postprocess = PostprocessConfig(**to_dict(best))
        bundle.provenance["postprocess_tuning"] = {
            "images": args.images,
            "pattern": args.pattern,
            "count": len(pairs),
            "ap50": best_metrics["ap50"],
            "adapted_rand_error": best_metrics["adapted_rand_error"],
        }
        save_model(bundle, args.model)
        print(f"wrote defaults to {args.model}")


if __name__ == "__main__":
    main()
