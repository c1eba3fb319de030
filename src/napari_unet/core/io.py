"""TIFF reading and writing, input discovery, output naming, atomic writes."""

from __future__ import annotations

import glob
import json
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

TIFF_SUFFIXES = (".tif", ".tiff")


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


SUPPORTED_KINDS = "biuf"  # bool, signed/unsigned integers, floats


def read_image_with_axes(path: str | os.PathLike[str]) -> tuple[NDArray[Any], str]:
    """Read a TIFF's first series and the axes tifffile reports for it.

    Returns
    -------
    (image, axes)
        ``axes`` uses tifffile's letters (e.g. ``"YX"``, ``"QYX"``, ``"YXS"``,
        ``"TZCYX"``); :func:`napari_unet.core.axes.normalise_axes` maps them.

    Raises
    ------
    InputError
        If the file cannot be read, is empty or has an unsupported dtype.

    """
    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tiff:
            if not tiff.series:
                raise InputError(f"{path}: the TIFF holds no image")
            series = tiff.series[0]
            data = series.asarray()
            axes = series.axes
    except InputError:
        raise
    except Exception as error:  # any decoder error (zlib, lzw, ...) means an unreadable file
        raise unreadable_tiff(path, error) from None
    check_pixels(data, str(path))
    return np.asarray(data), axes


def check_pixels(data: Any, name: str) -> None:
    """Raise :class:`InputError` unless ``data`` is a non-empty, real-valued 2-D+ array."""
    if data.size == 0:
        raise InputError(f"{name}: the image is empty (shape {tuple(data.shape)})")
    if np.dtype(data.dtype).kind not in SUPPORTED_KINDS:
        raise InputError(f"{name}: unsupported pixel type {data.dtype}")
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


def label_dtype(max_label: int) -> np.dtype[Any]:
    """Smallest unsigned dtype (uint16 or uint32) that holds ``max_label``."""
    return np.dtype(np.uint16) if max_label <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    On any exception the temporary file is removed and ``final`` is untouched,
    so no half-written file ever carries the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # host and pid in the name let a later run tell a dead writer's leftovers from a live one's
    handle, tmp_name = tempfile.mkstemp(
        prefix=f"{_part_prefix(final)}.", suffix=PART_SUFFIX, dir=final.parent
    )
    os.close(handle)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, final)
        _fsync_folder(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


PART_SUFFIX = ".part"
_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def _part_prefix(final: Path, host: str = _HOST, pid: int | None = None) -> str:
    return f".{final.name}.{host}-{os.getpid() if pid is None else pid}"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` survive a power loss (where the platform allows it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_parts(final: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files that dead writers of ``final`` left behind.

    A writer killed mid-file (``kill -9``, power loss) leaves its temporary
    file from :func:`atomic_path`.  Those never carry the final name, so they
    never pass for a result; this removes the ones whose writer ran on this
    host and is no longer alive.  Files of live writers, and of writers on
    other hosts (a shared folder on a cluster), are left alone.

    Returns
    -------
    list of Path
        The files removed.

    """
    final = Path(final)
    return _remove_dead(final.parent.glob(f".{glob.escape(final.name)}.{_HOST}-*{PART_SUFFIX}"))


def remove_stale_parts_in(folder: str | os.PathLike[str]) -> list[Path]:
    """:func:`remove_stale_parts` for every file in ``folder`` (e.g. model versions never finished)."""
    return _remove_dead(Path(folder).glob(f".*.{_HOST}-*{PART_SUFFIX}"))


def _remove_dead(parts: Iterable[Path]) -> list[Path]:
    removed = []
    for part in parts:
        pid_text = part.name.rsplit(f".{_HOST}-", 1)[-1].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed


def write_labels(
    path: str | os.PathLike[str],
    labels: NDArray[np.integer],
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write an instance label image atomically, zlib-compressed.

    Parameters
    ----------
    path : path
        Final file name.
    labels : ndarray of int
        Any shape; stored as uint16 or uint32 depending on the largest label.
    metadata : dict, optional
        JSON-serialisable provenance, stored in the TIFF's ImageDescription.

    """
    labels = np.asarray(labels)
    dtype = label_dtype(int(labels.max()) if labels.size else 0)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            labels.astype(dtype, copy=False),
            compression="zlib",
            photometric="minisblack",
            description=json.dumps(metadata or {}),
            metadata=None,
            bigtiff=labels.nbytes > 2**31,
        )
    return Path(path)


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


def write_overlay(path: str | os.PathLike[str], plane: NDArray[Any], labels: NDArray[np.integer]) -> Path:
    """Write a PNG of ``plane`` with the outlines of ``labels`` in yellow, atomically.

    Parameters
    ----------
    path : path
        The ``.png`` file to write.
    plane : ndarray, shape (Y, X) or (C, Y, X)
        Intensities of any real dtype; shown with a 1-99.8 percentile stretch.
    labels : ndarray of int, shape (Y, X)

    """
    import imageio.v3 as iio
    from skimage.segmentation import find_boundaries

    from napari_unet.core.preprocess import match_channels, percentile_normalise

    grey = match_channels(percentile_normalise(plane if plane.ndim == 3 else plane[None]), 1)[0]
    rgb = np.repeat((np.clip(grey, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb[find_boundaries(labels, mode="inner")] = (255, 220, 0)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, rgb, extension=".png")
    return Path(path)
