"""Lineage records kept in a model's provenance: where its weights came from.

A model's ``provenance`` (see :class:`~napari_unet.core.models.files.ModelBundle`)
holds, for a trained or fine-tuned model:

``parent`` and ``parent_hash``
    The name and weights hash of the model it was trained from.
``ancestors``
    The parent's own lineage, newest first: one :func:`lineage_entry` per
    generation, so the chain survives even when older files are deleted.
``images``
    What it learned from: one :func:`image_record` per image (names and
    hashes only, never copies of the pixels).
``steps``, ``date``, ``metrics``, ``training``
    How long and when it trained, what it scored, the training settings.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from napari_unet.core.models.files import ModelBundle


def pixels_sha256(image: Any) -> str:
    """SHA-256 (hex) of an image's pixels, shape and dtype.

    Two arrays with the same values, shape and dtype have the same hash,
    whatever file format or memory layout they came from.

    Parameters
    ----------
    image : array-like
        Any shape and dtype (dask and zarr arrays are read in full).

    """
    data = np.ascontiguousarray(np.asarray(image))
    digest = hashlib.sha256(f"{data.shape}|{data.dtype.str}|".encode())
    digest.update(data.tobytes())
    return digest.hexdigest()


def image_record(name: str, image: Any) -> dict[str, str]:
    """What provenance keeps about one training image: its name and :func:`pixels_sha256`."""
    return {"name": str(name), "sha256": pixels_sha256(image)}


def lineage_entry(bundle: ModelBundle) -> dict[str, Any]:
    """One generation of a lineage: the model's name, weights hash, date and training steps."""
    provenance = bundle.provenance
    steps = provenance.get("steps")
    if steps is None and isinstance(provenance.get("training"), dict):
        steps = provenance["training"].get("steps")
    return {
        "name": bundle.name,
        "hash": bundle.weights_hash(),
        "date": provenance.get("date"),
        "steps": steps,
    }


def ancestry(parent: ModelBundle) -> list[dict[str, Any]]:
    """The ``ancestors`` list of a model trained from ``parent``: the parent first, then its ancestors."""
    earlier = parent.provenance.get("ancestors")
    return [lineage_entry(parent), *(earlier if isinstance(earlier, list) else [])]


def lineage_names(bundle: ModelBundle) -> list[str]:
    """The model's name, then its parent's and ancestors' as recorded (newest first)."""
    provenance = bundle.provenance
    ancestors = provenance.get("ancestors")
    earlier = [e.get("name") for e in ancestors if isinstance(e, dict)] if isinstance(ancestors, list) else []
    names = [bundle.name, provenance.get("parent"), *earlier]
    return [name for name in names if isinstance(name, str) and name]


__all__ = ["ancestry", "image_record", "lineage_entry", "lineage_names", "pixels_sha256"]
