"""Compare ways of turning the network's heads into instances on a validation split.

Runs the network once per image and scores several post-processing variants on the
same outputs (the metrics of ``napari-unet evaluate``), to justify the heads and seeds the models use.

Usage: python scripts/compare_postprocessing.py MODEL IMAGES_DIR LABELS_DIR
"""

from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage as ndi

from napari_unet.core.config import InferenceConfig
from napari_unet.core.evaluation.metrics import summarise
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.postprocess import labels_from_outputs, remove_small_objects
from napari_unet.core.segmentation.segmenter import Segmenter


def main() -> None:
    model, images, labels = sys.argv[1:4]
    bundle = load_model(resolve_model(model))
    segmenter = Segmenter(bundle, InferenceConfig(device="cpu"))
    pairs = read_labelled_folder(images, labels)
    heads = bundle.config.heads
    variants: dict[str, list[np.ndarray]] = {
        "foreground + distance + boundary seeds (default)": [],
        "foreground + boundary seeds": [],
        "foreground + distance seeds": [],
        "foreground only (connected components)": [],
    }
    for _, image, _ in pairs:
        plane = image[None] if image.ndim == 2 else image
        normalised = segmenter.normalise(plane)
        diameter = segmenter.estimate_diameter(normalised)
        outputs = None
        job = segmenter.predict_plane(plane, segmenter.scale_for(diameter))
        while True:
            try:
                next(job)
            except StopIteration as stop:
                outputs = stop.value
                break
        p = outputs.probabilities
        config = segmenter.postprocess
        min_size = config.min_size / outputs.scale**2
        channel = dict(zip(heads, p, strict=True))
        variants["foreground + distance + boundary seeds (default)"].append(segmenter.labels(outputs))
        variants["foreground + boundary seeds"].append(
            labels_from_outputs(
                np.stack([channel["foreground"], channel["boundary"]]),
                ("foreground", "boundary"),
                config,
                min_size,
            )
        )
        variants["foreground + distance seeds"].append(
            labels_from_outputs(
                np.stack([channel["foreground"], channel["distance"]]),
                ("foreground", "distance"),
                config,
                min_size,
            )
        )
        fg = channel["foreground"] > config.foreground_threshold
        variants["foreground only (connected components)"].append(
            remove_small_objects(ndi.label(fg)[0], min_size)
        )
    truth = [lab for _, _, lab in pairs]
    print(
        f"| post-processing ({model}, {len(pairs)} images) | AP@0.5 | AP@0.5:0.95 | fg IoU | adapted Rand error |"
    )
    print("|---|---|---|---|---|")
    for name, predictions in variants.items():
        m = summarise(truth, predictions)
        print(
            f"| {name} | {m['ap50']:.3f} | {m['ap50_95']:.3f} | {m['foreground_iou']:.3f} | {m['adapted_rand_error']:.3f} |"
        )


if __name__ == "__main__":
    main()
