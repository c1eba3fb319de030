"""Provenance records: what a label file or a model was made from, and how.

The one place these records are assembled.  A label file written by a batch
(:func:`labels_provenance`) records the model (name, weights hash), the
settings, the software versions and the input: its file name, size, date and
SHA-256.  Absolute paths and the host name travel with every file people
share, so they are recorded only on request (``detail="full"``,
``napari-unet segment --provenance full``).

A model records its lineage (:func:`lineage`), how it was trained
(:func:`trained_model`), what on (:func:`training_images`, names and pixel
hashes, never the pixels) and, when training stopped early, how far it got
(:func:`stopped_early`).
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

from napari_unet import __version__
from napari_unet.core.config import InferenceConfig, PostprocessConfig, TrainingConfig, to_dict
from napari_unet.core.models.files import FORMAT_VERSION, ModelBundle
from napari_unet.core.models.lineage import ancestry, image_record

ProvenanceDetail = Literal["minimal", "full"]
PROVENANCE_DETAILS: tuple[ProvenanceDetail, ...] = ("minimal", "full")
"""``minimal``: file names and content hashes; ``full``: also absolute paths and the host name."""


def utc_now() -> str:
    """The current time, UTC, to the second (ISO 8601)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_digest(path: str | os.PathLike[str], chunk: int = 1 << 16) -> str:
    """SHA-256 of a file (hex), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while block := stream.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def software_versions() -> dict[str, str]:
    """Versions of the software that decides the labels."""
    import torch  # loaded already wherever a network ran; importing this module does not need it

    return {
        "napari-unet": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "tifffile": tifffile.__version__,
        "python": platform.python_version(),
    }


def labels_provenance(
    bundle: ModelBundle,
    inference: InferenceConfig,
    postprocess: PostprocessConfig,
    device: str,
    path: Path,
    axes: str,
    stitch: bool,
    diameter: float | None,
    detail: ProvenanceDetail = "minimal",
) -> dict[str, Any]:
    """What a label file was made from and how: stored in its metadata.

    Parameters
    ----------
    bundle : ModelBundle
        The model that segmented it.
    inference, postprocess
        The settings it ran with.
    device : str
        Device that ran the network.
    path : Path
        The input file.
    axes : str
        Normalised axes the input was read with.
    stitch : bool
        Whether objects were joined across planes.
    diameter : float or None
        Object diameter (pixels) the input was segmented at.
    detail : {"minimal", "full"}
        ``minimal`` names the input and the model file by their file names;
        ``full`` by their absolute paths, and adds the host name.

    Raises
    ------
    ValueError
        For an unknown ``detail``.

    """
    if detail not in PROVENANCE_DETAILS:
        raise ValueError(f"provenance detail must be one of {', '.join(PROVENANCE_DETAILS)}, got {detail!r}")
    full = detail == "full"
    stat = path.stat()
    model_file = bundle.source if full or not bundle.source else Path(bundle.source).name
    record = {
        "software": f"napari-unet {__version__}",
        "versions": software_versions(),
        "model": bundle.name,
        "model_source": model_file,
        "model_hash": bundle.weights_hash(),
        "model_format_version": FORMAT_VERSION,
        "model_trained": bundle.provenance.get("date"),
        "inference": to_dict(inference),
        "postprocess": to_dict(postprocess),
        "stitch": stitch,
        "device": device,
        "diameter": diameter,
        "input": str(path.resolve()) if full else path.name,
        "input_bytes": stat.st_size,
        "input_modified": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds"),
        "input_sha256": file_digest(path),
        "input_axes": axes,
    }
    if full:
        record["host"] = socket.gethostname()
    record["date"] = utc_now()
    return record


def lineage(parent: ModelBundle) -> dict[str, Any]:
    """A trained model's parent: its name, weights hash and the ancestors before it."""
    return {"parent": parent.name, "parent_hash": parent.weights_hash(), "ancestors": ancestry(parent)}


def trained_model(
    parent: ModelBundle,
    config: TrainingConfig,
    samples: Sequence[str],
    seconds: float,
    final_loss: float | None,
    metrics: dict[str, float],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The provenance of a model trained from ``parent``.

    The parent's own provenance is summarised in ``ancestors``, not copied:
    its data and command describe the parent, not the new model.

    Parameters
    ----------
    parent : ModelBundle
    config : TrainingConfig
    samples : sequence of str
        Names of the training samples.
    seconds : float
        Training time.
    final_loss : float or None
        The smoothed loss at the end.
    metrics : dict
        Validation scores at the end.
    extra : dict, optional
        What the caller knows besides (data folders, command, images).

    """
    import torch

    return {
        **(extra or {}),
        **lineage(parent),
        "steps": config.steps,
        "training": to_dict(config),
        "samples": list(samples),
        "date": utc_now(),
        "seconds": round(seconds, 1),
        "software": f"napari-unet {__version__}, torch {torch.__version__}",
        "final_loss": final_loss,
        "metrics": metrics,
    }


def stopped_early(
    parent: ModelBundle,
    config: TrainingConfig,
    steps: int,
    samples: Sequence[str],
    images: Sequence[dict[str, str]],
) -> dict[str, Any]:
    """The provenance of weights kept from a training run stopped after ``steps`` steps."""
    return {
        **lineage(parent),
        "parent_source": parent.source,
        "training": to_dict(config),
        "steps": steps,
        "stopped_early": True,
        "samples": list(samples),
        "images": list(images),
        "date": utc_now(),
    }


def fine_tune_round(
    trained: dict[str, Any],
    parent: ModelBundle,
    rounds: int,
    steps: int,
    images: Sequence[dict[str, str]],
) -> dict[str, Any]:
    """The provenance of a fine-tuning round's model, from :func:`trained_model`'s record.

    Every round continues one lineage: the parent is the model the first round
    started from (not the previous round's weights), and ``steps`` counts the
    steps of all rounds.
    """
    return {
        **trained,
        **lineage(parent),
        "parent_source": parent.source,
        "rounds": rounds,
        "steps": steps,
        "images": list(images),
    }


def held_out_validation(
    parent: dict[str, float],
    kept: dict[str, float],
    kept_step: int,
    history: Sequence[dict[str, float]],
    held_out: Sequence[str],
    objects: int,
    shared: bool,
    steps: int,
    better: bool,
) -> dict[str, Any]:
    """What a fine-tuning scored on the held-out corrections: parent and kept weights, every scoring.

    Parameters
    ----------
    parent, kept : dict
        ``ap50`` and ``foreground_iou`` of the starting model and of the weights kept.
    kept_step : int
        The step whose weights were kept (the best scoring).
    history : sequence of dict
        ``step``, ``ap50``, ``foreground_iou`` per scoring.
    held_out : sequence of str
        Names of the planes objects were held out from.
    objects : int
        Held-out objects scored.
    shared : bool
        Too few corrections to set some aside: scored on what it trained on.
    steps : int
        Steps trained (fewer than asked when training stopped early).
    better : bool
        Whether the kept weights beat the parent.

    """
    rounded = [{k: round(v, 4) if k != "step" else int(v) for k, v in h.items()} for h in history]
    return {
        "parent": {k: round(v, 4) for k, v in parent.items()},
        "kept": {k: round(v, 4) for k, v in kept.items()},
        "kept_step": kept_step,
        "scorings": rounded,
        "held_out": list(held_out),
        "objects": objects,
        "shared": shared,
        "steps": steps,
        "better": better,
    }


def training_images(named_images: Sequence[tuple[str, Any]]) -> list[dict[str, str]]:
    """One record per training image: its name and the SHA-256 of its pixels."""
    return [image_record(name, image) for name, image in named_images]


def training_data(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    pattern: str,
    named_images: Sequence[tuple[str, Any]],
    command: str,
) -> dict[str, Any]:
    """What a model trained on labelled folders records: the folders as given, the images, the command."""
    return {
        "data": {"images": str(images), "labels": str(labels), "pattern": pattern},
        "images": training_images(named_images),
        "command": command,
    }


__all__ = [
    "PROVENANCE_DETAILS",
    "ProvenanceDetail",
    "file_digest",
    "fine_tune_round",
    "held_out_validation",
    "labels_provenance",
    "lineage",
    "software_versions",
    "stopped_early",
    "trained_model",
    "training_data",
    "training_images",
    "utc_now",
]
