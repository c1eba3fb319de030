"""TIFF stacks read and written plane by plane, so memory does not grow with stack size.

:class:`TiffImage` reads a TIFF's first series lazily: indexing it reads only
the pages that hold the selected planes.  :class:`LabelStackWriter` writes an
instance label image one plane (one compressed page) at a time under a
temporary name and renames it at the end.  :class:`PixelSize` carries the
physical pixel size from the input's metadata to the output's.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import operator
import os
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import tifffile
from numpy.typing import NDArray

from napari_unet.core.io.atomic import PART_SUFFIX, atomic_path
from napari_unet.core.io.files import InputError, check_pixels, error_reason, unreadable_tiff

_MICRONS_PER_UNIT = {
    "µm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
    "inch": 25.4e3,
}
_RESOLUTION_UNIT_MICRONS = {2: 25.4e3, 3: 1e4, 4: 1e3, 5: 1.0}  # TIFF ResolutionUnit -> µm per unit


@dataclass(frozen=True)
class PixelSize:
    """Physical size of a pixel.

    Attributes
    ----------
    x, y : float
        Pixel width and height in ``unit``.
    z : float or None
        Spacing of Z planes in ``unit`` (None when unknown or 2-D).
    unit : str
        ``"µm"`` when the file's unit is a known length, else the file's own word.

    """

    x: float
    y: float
    z: float | None = None
    unit: str = "µm"

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible dictionary."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PixelSize:
        """Inverse of :meth:`to_dict`."""
        return cls(float(data["x"]), float(data["y"]), _optional_float(data.get("z")), str(data["unit"]))


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _in_microns(value: float, unit: str) -> tuple[float, str]:
    factor = _MICRONS_PER_UNIT.get(unit.strip().lower().replace("\\u00b5", "µ").replace("μ", "µ"))
    return (value * factor, "µm") if factor else (value, unit)


def read_pixel_size(tiff: tifffile.TiffFile) -> PixelSize | None:
    """Physical pixel size from OME, ImageJ or napari-unet metadata, or resolution tags.

    Returns ``None`` when the file does not say (no tags, or tifffile's and
    other writers' default of 1 pixel per unit without a unit).
    """
    if tiff.is_ome and tiff.ome_metadata:
        found = _ome_pixel_size(tiff.ome_metadata)
        if found:
            return found
    if tiff.is_shaped and tiff.shaped_metadata and "pixel_size" in tiff.shaped_metadata[0]:
        return PixelSize.from_dict(tiff.shaped_metadata[0]["pixel_size"])
    page = tiff.pages.first
    x_res, y_res = (_rational(page.tags.get(code)) for code in (282, 283))
    unit_code = int(page.tags.valueof(296, default=2))
    imagej = tiff.imagej_metadata or {}
    if x_res is None or y_res is None or x_res <= 0 or y_res <= 0:
        return None
    if imagej:
        unit = str(imagej.get("unit", "pixel"))
        x, unit_x = _in_microns(1 / x_res, unit)
        y, _ = _in_microns(1 / y_res, unit)
        spacing = imagej.get("spacing")
        z = _in_microns(float(spacing), unit)[0] if spacing else None
        return None if unit_x == "pixel" and x == y == 1 and z is None else PixelSize(x, y, z, unit_x)
    if unit_code in _RESOLUTION_UNIT_MICRONS:
        factor = _RESOLUTION_UNIT_MICRONS[unit_code]
        if x_res == y_res == 1:  # the TIFF default, not a measurement
            return None
        return PixelSize(factor / x_res, factor / y_res)
    return None


def _rational(tag: Any) -> float | None:
    if tag is None:
        return None
    value = tag.value
    if isinstance(value, tuple) and len(value) == 2:
        return value[0] / value[1] if value[1] else None
    return float(value)


def _ome_pixel_size(xml: str) -> PixelSize | None:
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError:
        return None
    pixels = next((e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None

    def size(axis: str) -> tuple[float | None, str]:
        value = pixels.attrib.get(f"PhysicalSize{axis}")
        unit = pixels.attrib.get(f"PhysicalSize{axis}Unit", "µm")
        return (None, unit) if value is None else _in_microns(float(value), unit)

    (x, unit), (y, _), (z, _) = size("X"), size("Y"), size("Z")
    return PixelSize(x or 1.0, y or x or 1.0, z, unit)


class TiffImage:
    """A TIFF file's first image series, read on demand page by page.

    Indexing (``image[3]``, ``image[2, :, 0]``) reads only the pages that hold
    the selected planes, so a stack larger than memory can be walked plane by
    plane.  Series whose pages do not line up with its leading axes (e.g. a
    stack stored as one page) are read from a fresh memory map per access when
    uncompressed, and whole otherwise.

    Parameters
    ----------
    path : path

    Attributes
    ----------
    shape : tuple of int
    dtype : numpy dtype
    axes : str
        tifffile's axis letters for the series (e.g. ``"ZYX"``, ``"QYXS"``).
    pixel_size : PixelSize or None

    Raises
    ------
    InputError
        If the file cannot be opened as a TIFF, holds no image, is empty or
        has an unsupported pixel type.

    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            with _tifffile_errors() as errors:
                self._tiff = tifffile.TiffFile(self.path)
        except Exception as error:  # any parser error means an unreadable file
            raise unreadable_tiff(self.path, error) from None
        try:
            with _tifffile_errors() as more:
                series = self._tiff.series
            if errors or more:  # tifffile reads on past damage, e.g. a truncated stack as one plane
                raise InputError(f"{self.path}: damaged or truncated TIFF ({(errors + more)[0]})")
            if not series:
                raise InputError(f"{self.path}: the TIFF holds no image")
            self._series = series[0]
            _check_extent(self.path, self._series)
            self.shape: tuple[int, ...] = tuple(int(n) for n in self._series.shape)
            self.dtype = np.dtype(self._series.dtype)
            self.axes: str = self._series.axes
            check_pixels(self, str(self.path))
            self.pixel_size = read_pixel_size(self._tiff)
            self._split = self._page_split()
        except InputError:
            self.close()
            raise
        except Exception as error:
            self.close()
            raise unreadable_tiff(self.path, error) from None

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """Number of pixels (samples)."""
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Size of the whole image in memory."""
        return self.size * self.dtype.itemsize

    def _page_split(self) -> int | None:
        """Number of leading axes that enumerate pages (None if pages do not line up with axes)."""
        pages = len(self._series.pages)
        page_size = math.prod(self._series.keyframe.shape)
        for split in range(len(self.shape) - 1, -1, -1):
            if math.prod(self.shape[:split]) == pages and math.prod(self.shape[split:]) == page_size:
                return split if pages > 1 else None
        return None

    def __getitem__(self, key: Any) -> NDArray[Any]:
        key = key if isinstance(key, tuple) else (key,)
        if any(k is Ellipsis or k is None for k in key) or len(key) > self.ndim:
            raise IndexError("TiffImage takes integers and slices, one per axis")
        key = key + (slice(None),) * (self.ndim - len(key))
        try:
            if self._split is None:
                return self._read_unpaged(key)
            lead, trail = key[: self._split], key[self._split :]
            lead_shape = self.shape[: self._split]
            choices = [
                range(n)[k] if isinstance(k, slice) else [range(n)[operator.index(k)]]
                for k, n in zip(lead, lead_shape, strict=True)
            ]
            kept = tuple(len(c) for c, k in zip(choices, lead, strict=True) if isinstance(k, slice))
            page_shape = self.shape[self._split :]
            planes = [
                self._read_page(int(np.ravel_multi_index(index, lead_shape))).reshape(page_shape)[trail]
                for index in itertools.product(*choices)
            ]
            if not planes:
                return np.zeros(kept + np.zeros(page_shape, self.dtype)[trail].shape, self.dtype)
            return np.stack(planes).reshape(kept + planes[0].shape)
        except IndexError:
            raise
        except Exception as error:  # a page that cannot be decoded: truncated or corrupt file
            raise InputError(f"{self.path}: cannot read pixel data ({error_reason(error)})") from None

    def _read_page(self, number: int) -> NDArray[Any]:
        return np.asarray(self._series.asarray(key=number))

    def _read_unpaged(self, key: tuple[Any, ...]) -> NDArray[Any]:
        offset = self._series.dataoffset
        if offset is not None and not self._series.is_multifile:
            # a fresh map per access: mapped pages would otherwise stay resident and count as ours
            mapped = np.memmap(
                self.path,
                dtype=self.dtype.newbyteorder(self._tiff.byteorder),
                mode="r",
                offset=offset,
                shape=self.shape,
            )
            try:
                return np.array(mapped[key], dtype=self.dtype)
            finally:
                del mapped
        return np.asarray(self._series.asarray())[key]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> NDArray[Any]:
        data = self[tuple(slice(None) for _ in self.shape)]
        return data if dtype is None else data.astype(dtype, copy=False)

    def close(self) -> None:
        """Close the file."""
        self._tiff.close()

    def __enter__(self) -> TiffImage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def _tifffile_errors() -> Iterator[list[str]]:
    """Collect the errors tifffile logs (and otherwise reads past) in this thread."""
    found: list[str] = []
    thread = threading.get_ident()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread and record.levelno >= logging.ERROR:
                found.append(record.getMessage().split("> ", 1)[-1])

    logger = logging.getLogger("tifffile")
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def _check_extent(path: Path, series: Any) -> None:
    """Raise InputError if a page's pixel data would lie past the end of its file."""
    for number, page in enumerate(series.pages):
        if page is None:
            raise InputError(f"{path}: damaged TIFF (page {number} of the image is missing)")
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts, strict=False) if c]
        if ends and max(ends) > page.parent.filehandle.size:
            raise InputError(f"{path}: truncated TIFF (pixel data of page {number} ends past the file's end)")


LABELS_FORMAT = "napari-unet-labels"
_LABEL_TYPES = (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32))


class LabelStackWriter:
    """Write an instance label image plane by plane into a zlib-compressed TIFF, atomically.

    Use as a context manager; call :meth:`write` once per plane, in C order
    over the leading axes.  Planes go to disk as they come (one page each), so
    memory holds one plane at a time.  The file is written under a temporary
    name and renamed to ``path`` only when every plane is written and the
    context exits without an error; otherwise the temporary file is removed.

    Labels are stored as ``dtype`` (uint16 unless given) and widened to the
    smallest unsigned type that holds a larger label (rewriting the pages
    already written) only if one comes.  BigTIFF is used when the uncompressed
    labels could pass 2 GiB.

    Parameters
    ----------
    path : path
        Final file name.
    shape : tuple of int
        Shape of the whole label image; the last two axes are (Y, X).
    axes : str
        Axis letters of ``shape`` (stored in the metadata).
    metadata : dict
        JSON-serialisable provenance; stored with the shape and axes as JSON
        in the first page's ImageDescription (tifffile's "shaped" format).
        Entries added to :attr:`metadata` before the end are saved too.
    pixel_size : PixelSize, optional
        Stored as TIFF resolution tags and in the metadata.
    dtype : {uint8, uint16, uint32}
        Pixel type of the file unless a label needs a wider one.

    Attributes
    ----------
    objects : int
        Distinct non-zero labels written so far.
    max_label : int

    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        shape: tuple[int, ...],
        axes: str,
        metadata: dict[str, Any] | None = None,
        pixel_size: PixelSize | None = None,
        dtype: type[np.unsignedinteger[Any]] = np.uint16,
    ) -> None:
        if len(shape) < 2 or len(axes) != len(shape):
            raise ValueError(f"label image shape {shape} and axes {axes!r} do not fit")
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.axes = axes
        self.metadata = dict(metadata or {})
        self.pixel_size = pixel_size
        self.planes = math.prod(self.shape[:-2])
        self.written = 0
        self.max_label = 0
        self._present = np.zeros(1, bool)
        self._dtype = np.dtype(dtype)
        if self._dtype not in _LABEL_TYPES:
            raise ValueError(f"labels are stored as uint8, uint16 or uint32, not {self._dtype}")
        self.bigtiff = math.prod(self.shape) * 4 > 2**31
        self._exit = ExitStack()
        self._tmp: Path | None = None
        self._writer: tifffile.TiffWriter | None = None

    @property
    def objects(self) -> int:
        """Distinct non-zero labels written so far."""
        return int(self._present[1:].sum())

    def __enter__(self) -> LabelStackWriter:
        self._tmp = self._exit.enter_context(atomic_path(self.path))
        self._writer = tifffile.TiffWriter(self._tmp, bigtiff=self.bigtiff)
        return self

    def _description(self) -> str:
        extra = {"pixel_size": self.pixel_size.to_dict()} if self.pixel_size else {}
        return json.dumps(
            {"shape": list(self.shape), "axes": self.axes, "format": LABELS_FORMAT, **self.metadata, **extra}
        )

    def _write_page(self, plane: NDArray[Any], first: bool) -> None:
        assert self._writer is not None
        options: dict[str, Any] = {}
        if first:
            options["description"] = self._description()
        if self.pixel_size is not None:
            options.update(_resolution_tags(self.pixel_size))
        self._writer.write(
            plane.astype(self._dtype, copy=False),
            compression="zlib",
            photometric="minisblack",
            metadata=None,
            software="napari-unet",
            **options,
        )

    def write(self, plane: NDArray[np.integer]) -> None:
        """Append one (Y, X) plane of labels (0 = background)."""
        if self._writer is None:
            raise RuntimeError("LabelStackWriter.write outside its with block")
        plane = np.asarray(plane)
        if plane.shape != self.shape[-2:]:
            raise ValueError(f"plane shape {plane.shape} differs from the image's {self.shape[-2:]}")
        if self.written >= self.planes:
            raise ValueError(f"{self.path}: more than the {self.planes} planes of {self.shape}")
        if plane.size and plane.min() < 0:
            raise ValueError("labels must not be negative")
        ids = np.unique(plane)
        top = int(ids[-1]) if ids.size else 0
        if top > np.iinfo(np.uint32).max:
            raise ValueError(f"label {top} does not fit in uint32")
        if top >= self._present.size:
            self._present = np.concatenate([self._present, np.zeros(top + 1 - self._present.size, bool)])
        self._present[ids] = True
        self.max_label = max(self.max_label, top)
        if top > np.iinfo(self._dtype).max:
            self._widen(next(kind for kind in _LABEL_TYPES if top <= np.iinfo(kind).max))
        self._write_page(plane, first=self.written == 0)
        self.written += 1

    def _widen(self, dtype: np.dtype[Any]) -> None:
        """Switch to ``dtype``, rewriting the pages written so far."""
        assert self._writer is not None and self._tmp is not None
        self._writer.close()
        narrow = self._tmp.with_name(self._tmp.name[: -len(PART_SUFFIX)] + ".narrow" + PART_SUFFIX)
        os.replace(self._tmp, narrow)
        try:
            self._dtype = dtype
            self.bigtiff = self.bigtiff or math.prod(self.shape) * 4 > 2**31
            self._writer = tifffile.TiffWriter(self._tmp, bigtiff=self.bigtiff)
            with tifffile.TiffFile(narrow) as old:
                for number in range(self.written):
                    self._write_page(old.pages[number].asarray(), first=number == 0)
        finally:
            narrow.unlink(missing_ok=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
            if kind is None:
                if self.written != self.planes:
                    raise ValueError(f"{self.path}: wrote {self.written} of {self.planes} planes")
                assert self._tmp is not None
                self.metadata["objects"] = self.objects
                tifffile.tiffcomment(self._tmp, self._description())
        except BaseException as failure:
            self._exit.__exit__(type(failure), failure, failure.__traceback__)
            raise
        self._exit.__exit__(kind, error, traceback)


def _resolution_tags(pixel_size: PixelSize) -> dict[str, Any]:
    if pixel_size.unit == "µm":  # TIFF has no micrometre unit that every reader knows; cm is standard
        return {
            "resolution": (1e4 / pixel_size.x, 1e4 / pixel_size.y),
            "resolutionunit": tifffile.RESUNIT.CENTIMETER,
        }
    return {"resolution": (1 / pixel_size.x, 1 / pixel_size.y), "resolutionunit": tifffile.RESUNIT.NONE}


def read_label_metadata(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The metadata of a complete napari-unet label file, or None if ``path`` is not one.

    Complete means: a readable TIFF whose description is this package's
    label metadata and whose pages hold every plane of the stated shape.
    """
    try:
        with tifffile.TiffFile(path) as tiff:
            metadata = json.loads(tiff.pages.first.description or "null")
            if not isinstance(metadata, dict) or metadata.get("format") != LABELS_FORMAT:
                return None
            shape = tuple(int(n) for n in metadata["shape"])
            if len(tiff.pages) != math.prod(shape[:-2]):
                return None
            return metadata
    except Exception:  # unreadable or foreign: not a complete output
        return None
