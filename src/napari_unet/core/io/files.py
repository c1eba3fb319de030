"""Files: input discovery and TIFF reading, output naming, the outline PNG, the user's data folders."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from napari_unet.core.io.atomic import atomic_path
from napari_unet.core.segmentation.axes import check_pixel_type

TIFF_SUFFIXES = (".tif", ".tiff")
OUTLINE_COLOUR = (255, 220, 0)
"""Outlines in overlays: yellow, seen on grey and on dark backgrounds."""


class InputError(ValueError):
    """An input cannot be processed; the message names the file and the reason."""


def find_inputs(paths: Iterable[str | os.PathLike[str]], pattern: str = "*") -> list[Path]:
    """Expand files and folders into a sorted list of TIFF files.

    Folders contribute their TIFF files matching ``pattern`` (not recursive).
    Files are kept as given, whatever their extension, so a mislabelled file
    still gets a clear error when it is read.

    Raises
    ------
    InputError
        If a path does not exist.

    """
    found: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found.extend(
                sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES)
            )
        elif path.exists():
            found.append(path)
        else:
            raise InputError(f"{path}: no such file or folder")
    return found


def read_image(path: str | os.PathLike[str]) -> NDArray[Any]:
    """Read a whole image into memory.

    Raises
    ------
    InputError
        If the file cannot be read as a TIFF image or holds no pixels.

    """
    path = Path(path)
    try:
        data = tifffile.imread(path)
    except Exception as error:  # any decoder error (zlib, lzw, ...) means an unreadable file
        raise unreadable_tiff(path, error) from None
    check_pixels(data, str(path))
    return np.asarray(data)


def check_pixels(data: Any, name: str) -> None:
    """Raise :class:`InputError` unless ``data`` is a non-empty 2-D+ array of a supported pixel type.

    Supported: bool, integer and floating point (see
    :func:`~napari_unet.core.segmentation.axes.check_pixel_type`).
    """
    if data.size == 0:
        raise InputError(f"{name}: the image is empty (shape {tuple(data.shape)})")
    try:
        check_pixel_type(data.dtype)
    except ValueError as error:
        raise InputError(f"{name}: {error}") from None
    if data.ndim < 2:
        raise InputError(f"{name}: an image needs at least 2 dimensions, got shape {tuple(data.shape)}")


def error_reason(error: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def unreadable_tiff(path: Path, error: BaseException) -> InputError:
    """The one-line error for a file the TIFF reader refused (an empty file says so)."""
    try:
        empty = path.is_file() and path.stat().st_size == 0
    except OSError:
        empty = False
    reason = "empty file (0 bytes)" if empty else error_reason(error)
    return InputError(f"{path}: cannot read as TIFF ({reason})")


def output_path(input_path: str | os.PathLike[str], outdir: str | os.PathLike[str]) -> Path:
    """``OUTDIR/<input stem>.tif`` (a ``.ome.tif`` input loses both suffixes)."""
    name = Path(input_path).name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    return Path(outdir) / f"{name}.tif"


def read_labelled_folder(
    images: str | os.PathLike[str], labels: str | os.PathLike[str], pattern: str = "*"
) -> list[tuple[str, NDArray[Any], NDArray[Any]]]:
    """Read image/label pairs that share a file name.

    Parameters
    ----------
    images, labels : path
        Folders; every TIFF in ``images`` matching ``pattern`` needs a label
        TIFF of the same name in ``labels``.
    pattern : str
        Glob pattern selecting image files (e.g. ``"slice1*.tif"``).

    Returns
    -------
    list of (name, image, labels)
        Sorted by name; ``image`` is (Y, X) or (C, Y, X); ``labels`` are
        instance TIFFs (0 = background).

    Raises
    ------
    InputError
        If a folder holds no TIFFs, an image has no label file, or shapes differ.

    """
    image_paths = find_inputs([images], pattern)
    if not image_paths:
        raise InputError(f"{images}: no TIFF images matching {pattern!r} in this folder")
    pairs = []
    for image_path in image_paths:
        label_path = Path(labels) / image_path.name
        if not label_path.is_file():
            raise InputError(f"{image_path}: no label file {label_path}")
        image = read_image(image_path)
        label = read_image(label_path)
        if image.ndim == 3 and image.shape[:2] == label.shape:
            image = np.moveaxis(image, -1, 0)  # (Y, X, C) colour -> (C, Y, X)
        if image.shape[-2:] != label.shape or image.ndim > 3:
            raise InputError(f"{label_path}: labels shape {label.shape} does not match image {image.shape}")
        pairs.append((image_path.name, image, label))
    return pairs


def write_overlay(
    path: str | os.PathLike[str],
    plane: NDArray[Any],
    labels: NDArray[np.integer],
    beside: bool = False,
    max_height: int | None = None,
) -> Path:
    """Write a PNG of ``plane`` with the outlines of ``labels`` in yellow, atomically.

    Parameters
    ----------
    path : path
        The ``.png`` file to write.
    plane : ndarray, shape (Y, X) or (C, Y, X)
        Intensities of any real dtype, with a 1-99.8 percentile stretch: three
        channels are shown as RGB (one stretch for all, so stains keep their
        hues), any other number grey (channels averaged).
    labels : ndarray of int, shape (Y, X)
    beside : bool
        Show the plane without outlines to the left of the outlined one (a
        model's cover image).
    max_height : int, optional
        Shrink the picture (anti-aliased, aspect ratio kept) to at most this
        many rows.

    """
    import imageio.v3 as iio
    from skimage.segmentation import find_boundaries
    from skimage.transform import resize

    from napari_unet.core.segmentation.preprocess import match_channels, percentile_normalise

    channels = plane if plane.ndim == 3 else plane[None]
    if channels.shape[0] == 3:
        stretched = percentile_normalise(channels.reshape(1, -1, channels.shape[-1])).reshape(channels.shape)
        plain = np.moveaxis((np.clip(stretched, 0, 1) * 255).astype(np.uint8), 0, -1)
    else:
        grey = match_channels(percentile_normalise(channels), 1)[0]
        plain = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb = plain.copy()
    rgb[find_boundaries(labels, mode="inner")] = OUTLINE_COLOUR
    if beside:
        rgb = np.concatenate([plain, rgb], axis=1)
    if max_height is not None and rgb.shape[0] > max_height:
        width = round(rgb.shape[1] * max_height / rgb.shape[0])
        shrunk = resize(rgb, (max_height, width), order=1, anti_aliasing=True)  # floats in [0, 1]
        rgb = (np.clip(shrunk, 0, 1) * 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")
    return Path(path)


def user_data_folder(name: str, environment: str) -> Path:
    """A folder of napari-unet's in the platform's user data folder, or where ``$environment`` says.

    Parameters
    ----------
    name : str
        Sub-folder of the user data folder (e.g. ``"models"``), used unless
        the environment variable is set.
    environment : str
        Name of the environment variable that overrides the location.

    Returns
    -------
    Path
        Not created here.

    """
    override = os.environ.get(environment)
    if override:
        return Path(override)
    from platformdirs import user_data_path

    return user_data_path("napari-unet", appauthor=False) / name
