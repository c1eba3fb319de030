"""A person's corrections: reviewed regions, saving them as they are made, training samples.

A correction is one 2-D plane of an image with the labels a person corrected
and a mask of the pixels they reviewed.  Only reviewed pixels teach the model
(see :func:`~napari_unet.core.samples.prepare_sample`): a brush stroke says
nothing about the rest of the image.  :func:`reviewed_region` turns the pixels
a person edited into that mask; :class:`CorrectionStore` keeps each plane's
correction in its own file, written atomically, so a crash loses nothing that
was saved.

Folder layout::

    <folder>/<image key>/plane-<i>-<j>.npz   # image plane, labels, mask, metadata
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi

from napari_unet.core.io import atomic_path
from napari_unet.core.samples import TrainingSample, prepare_sample
from napari_unet.core.weights import ModelBundle

CORRECTIONS_DIR_ENV = "NAPARI_UNET_CORRECTIONS_DIR"
REVIEW_MARGIN = 4
"""Pixels around an edited object that count as reviewed (its outline and some background)."""

_FINGERPRINT_ELEMENTS = 2**22
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_corrections_dir() -> Path:
    """``$NAPARI_UNET_CORRECTIONS_DIR`` or ``corrections`` in the platform's user data folder."""
    override = os.environ.get(CORRECTIONS_DIR_ENV)
    if override:
        return Path(override)
    from platformdirs import user_data_path

    return user_data_path("napari-unet", appauthor=False) / "corrections"


def image_fingerprint(image: Any) -> str:
    """Identify an image by its content (hex, 16 digits), so a reopened file is recognised.

    Large arrays are sampled on a regular grid; dask and zarr arrays are read
    only at the sampled positions.

    Parameters
    ----------
    image : array-like
        Any shape and dtype.

    """
    shape = tuple(int(n) for n in image.shape)
    digest = hashlib.sha256(f"{shape}|{np.dtype(image.dtype).str}".encode())
    size = int(np.prod(shape, dtype=np.int64))
    step = max(1, int(np.ceil((size / _FINGERPRINT_ELEMENTS) ** (1 / max(len(shape), 1)))))
    sample = np.ascontiguousarray(np.asarray(image[tuple(slice(None, None, step) for _ in shape)]))
    digest.update(sample.tobytes())
    return digest.hexdigest()[:16]


def image_key(name: str, fingerprint: str) -> str:
    """Folder name for an image's corrections: a readable name plus its fingerprint."""
    readable = _UNSAFE.sub("_", name).strip("._")[:60] or "image"
    return f"{readable}-{fingerprint}"


def reviewed_region(
    labels: NDArray[np.integer], edited: NDArray[np.bool_], margin: int = REVIEW_MARGIN
) -> NDArray[np.bool_]:
    """Pixels a person has reviewed, given the pixels they edited.

    An edited pixel reviews itself and the whole object it now belongs to (a
    person who fixes part of a nucleus looked at all of it), grown by
    ``margin`` pixels so the object's outline and the background just around
    it are learned too.  Untouched objects elsewhere stay unreviewed.

    Parameters
    ----------
    labels : ndarray of int, shape (Y, X)
        Corrected instance labels, 0 = background.
    edited : ndarray of bool, shape (Y, X)
        Pixels the person painted, erased or filled.
    margin : int
        Pixels added around the edited objects.

    Returns
    -------
    ndarray of bool, shape (Y, X)

    """
    labels = np.asarray(labels)
    edited = np.asarray(edited, bool)
    if labels.shape != edited.shape:
        raise ValueError(f"labels shape {labels.shape} != edited mask shape {edited.shape}")
    touched = np.unique(labels[edited])
    region = edited | np.isin(labels, touched[touched > 0])
    if margin > 0 and region.any():
        region = ndi.binary_dilation(region, iterations=margin)
    return region


@dataclass
class Correction:
    """One corrected 2-D plane.

    Attributes
    ----------
    key : str
        The image's key (:func:`image_key`); all planes of one image share it.
    plane : tuple of int
        Position along the image's stack axes (``()`` for a 2-D image).
    image : ndarray, shape (Y, X) or (C, Y, X)
        The image plane, as given to the model.
    labels : ndarray of int32, shape (Y, X)
        Corrected instance labels.
    mask : ndarray of bool, shape (Y, X)
        Reviewed pixels (what trains).
    meta : dict
        JSON-compatible: image name and source path, axes, date.

    """

    key: str
    plane: tuple[int, ...]
    image: NDArray[Any]
    labels: NDArray[np.int32]
    mask: NDArray[np.bool_]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Readable name for progress and provenance: ``key`` plus the plane."""
        return f"{self.key}[{','.join(map(str, self.plane))}]" if self.plane else self.key

    def sample(self, bundle: ModelBundle) -> TrainingSample:
        """The training sample for ``bundle``'s scale and channels (see ``prepare_sample``)."""
        return prepare_sample(
            self.image, self.labels, bundle.config, bundle.preprocess, mask=self.mask, name=self.name
        )


def training_samples(corrections: list[Correction], bundle: ModelBundle) -> list[TrainingSample]:
    """Training samples from the corrections that reviewed anything."""
    return [c.sample(bundle) for c in corrections if c.mask.any()]


class CorrectionStore:
    """Corrections on disk, one atomically written ``.npz`` file per image plane.

    Parameters
    ----------
    folder : path, optional
        Defaults to :func:`default_corrections_dir`.

    """

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else default_corrections_dir()

    def path(self, key: str, plane: tuple[int, ...]) -> Path:
        """File of one plane's correction."""
        suffix = "-".join(str(i) for i in plane) if plane else "0"
        return self.folder / key / f"plane-{suffix}.npz"

    def save(self, correction: Correction) -> Path:
        """Write one correction (replacing that plane's previous one) atomically."""
        meta = {
            **correction.meta,
            "plane": list(correction.plane),
            "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        final = self.path(correction.key, correction.plane)
        with atomic_path(final) as tmp, open(tmp, "wb") as stream:
            np.savez_compressed(
                stream,
                image=np.asarray(correction.image),
                labels=np.asarray(correction.labels, np.int32),
                mask=np.asarray(correction.mask, bool),
                meta=np.array(json.dumps(meta)),
            )
        return final

    def load(self, key: str) -> list[Correction]:
        """All saved corrections of one image, in plane order; unreadable files are skipped."""
        corrections = []
        for path in sorted((self.folder / key).glob("plane-*.npz")):
            try:
                with np.load(path, allow_pickle=False) as data:
                    meta = json.loads(str(data["meta"]))
                    corrections.append(
                        Correction(
                            key=key,
                            plane=tuple(int(i) for i in meta.get("plane", ())),
                            image=data["image"],
                            labels=data["labels"].astype(np.int32),
                            mask=data["mask"].astype(bool),
                            meta=meta,
                        )
                    )
            except (OSError, ValueError, KeyError, EOFError):
                continue
        return sorted(corrections, key=lambda c: c.plane)

    def keys(self) -> list[str]:
        """Keys of the images that have saved corrections."""
        if not self.folder.is_dir():
            return []
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and any(p.glob("plane-*.npz")))

    def count(self, key: str) -> int:
        """Number of saved planes of one image."""
        return len(list((self.folder / key).glob("plane-*.npz")))

    def remove(self, key: str, plane: tuple[int, ...]) -> None:
        """Forget one plane's correction."""
        self.path(key, plane).unlink(missing_ok=True)


__all__ = [
    "CORRECTIONS_DIR_ENV",
    "Correction",
    "CorrectionStore",
    "default_corrections_dir",
    "image_fingerprint",
    "image_key",
    "reviewed_region",
    "training_samples",
]
