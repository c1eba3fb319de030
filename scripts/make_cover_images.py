"""Cut the bundled models' cover images (src/napari_unet/weights/<model>-cover.tif) from the labelled data.

Each is a square crop (256 pixels; 240 for phase-cells, whose 16-bit noise compresses poorly:
each file about 100 kB at most, each at least the 230 pixels a package's input needs) of a held-out image of the model's kind, rescaled so that its objects
(median equivalent diameter, measured on the image's labels) appear at the model's object size:
what the exported bioimage.io package's test input and cover are made from.  The crop is the
window (on a 32-pixel grid) holding the most whole objects.  The TIFF description records the
source file, scale, crop window and the data's licence.

Usage: python scripts/make_cover_images.py [DATA]   (DATA: the labelled data folder, default
../shared/data beside the repository, or $NAPARI_UNET_DATA)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_unet.core.models.registry import bundled_model_path, load_model
from napari_unet.core.segmentation.preprocess import rescale
from napari_unet.core.segmentation.sizing import median_diameter, working_scale

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "napari_unet" / "weights"

# model: (image in the data folder, held out from the model's training; the data's licence; crop side)
SOURCES = {
    "nuclei": (
        "nuclei-dsb2018/val/4dbbb275960ab9e4ec2c66c8d3000f7c70c8dce5112df591b95db84e25efa6e9.tif",
        "CC0-1.0 (Data Science Bowl 2018, BBBC038v1; Caicedo et al., Nature Methods 2019)",
        256,
    ),
    "phase-cells": (
        "cells-usiigaci/val/set41.tif",
        "MIT (Usiigaci, github.com/oist/Usiigaci; Tsai et al., SoftwareX 2019)",
        240,
    ),
    "em-membranes": (
        "em-isbi2012/train/slice22.tif",
        "ISBI 2012 EM segmentation challenge: free for research use with citation (Cardona et al., "
        "PLoS Biology 2010; Arganda-Carreras et al., Frontiers in Neuroanatomy 2015)",
        256,
    ),
}


def _whole_objects(labels: np.ndarray, y: int, x: int, side: int) -> int:
    window = labels[y : y + side, x : x + side]
    border = np.concatenate([window[0], window[-1], window[:, 0], window[:, -1]])
    return len(set(np.unique(window)) - set(np.unique(border)) - {0})


def cover_crop(data: Path, model: str) -> tuple[np.ndarray, dict]:
    """The crop for ``model`` and the metadata stored with it."""
    relative, licence, side = SOURCES[model]
    split, name = data / Path(relative).parent, Path(relative).name
    image = tifffile.imread(split / "images" / name)
    labels = tifffile.imread(split / "labels" / name)
    scale = working_scale(median_diameter(labels), load_model(bundled_model_path(model)).preprocess)
    scaled = np.clip(np.round(rescale(image, scale)), 0, np.iinfo(image.dtype).max).astype(image.dtype)
    scaled_labels = rescale(labels, scale, order=0)
    corners = [
        (y, x)
        for y in range(0, scaled.shape[0] - side + 1, 32)
        for x in range(0, scaled.shape[1] - side + 1, 32)
    ]
    y, x = max(corners, key=lambda corner: _whole_objects(scaled_labels, *corner, side))
    metadata = {
        "source": relative,
        "scale": round(scale, 4),
        "crop_yx": [y, x, side, side],
        "licence": licence,
    }
    return np.ascontiguousarray(scaled[y : y + side, x : x + side]), metadata


def main() -> None:
    """Write every bundled model's cover crop."""
    default = os.environ.get("NAPARI_UNET_DATA", REPO.parent / "shared" / "data")
    data = Path(sys.argv[1] if len(sys.argv) > 1 else default)
    for model in SOURCES:
        crop, metadata = cover_crop(data, model)
        path = WEIGHTS / f"{model}-cover.tif"
        tifffile.imwrite(
            path,
            crop,
            compression="zlib",
            compressionargs={"level": 9},
            predictor=True,
            photometric="minisblack",
            description=json.dumps(metadata),
        )
        print(f"{path.relative_to(REPO)}: {crop.shape} {crop.dtype}, {path.stat().st_size} bytes, {metadata}")


if __name__ == "__main__":
    main()
