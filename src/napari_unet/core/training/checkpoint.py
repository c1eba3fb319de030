"""Training checkpoints: stop a long training at any time and go on later from where it was.

A checkpoint holds everything the next step depends on: the network's and the
optimiser's state, the step, the crop sampler's random generators and the
smoothed loss.  Resuming from it gives the same model as an uninterrupted run
with the same settings.  It is written atomically, so a run killed while
writing leaves the previous checkpoint intact, and it refuses to resume a run
with other settings (that would silently mix two trainings).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from napari_unet.core.config import TrainingConfig, to_dict
from napari_unet.core.io.atomic import atomic_path

FORMAT = "napari-unet training checkpoint 1"


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a training run saves its state.

    Attributes
    ----------
    path : path
        The checkpoint file; a run that finds it there resumes from it.
    every : int
        Optimiser steps between checkpoints.

    """

    path: str | os.PathLike[str]
    every: int = 250


def run_settings(config: TrainingConfig, model_name: str, sample_names: list[str]) -> dict[str, Any]:
    """What must be the same for a checkpoint to be resumed: the settings, the model and the data."""
    settings = to_dict(config)
    settings.pop("validate_every", None)  # scoring more or less often does not change the training
    return {"config": settings, "model": model_name, "samples": sorted(sample_names)}


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` (see :func:`load_checkpoint`) to ``path`` atomically."""
    with atomic_path(path) as partial:
        torch.save({"format": FORMAT, **state}, partial)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], settings: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at ``path``, or ``None`` if there is no checkpoint.

    Parameters
    ----------
    path : path
    settings : dict
        :func:`run_settings` of the run that wants to resume.

    Returns
    -------
    dict or None
        Keys ``step``, ``network``, ``optimiser``, ``numpy_rng``, ``torch_rng``,
        ``smoothed``, ``elapsed`` and ``settings``.

    Raises
    ------
    ValueError
        If the file is not a checkpoint, or was written by a run with other
        settings, model or data (the message names the file and what differs).

    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise ValueError(
            f"{path}: not a readable training checkpoint ({error}); delete it to start over"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a napari-unet training checkpoint; delete it to start over")
    saved = state["settings"]
    if saved != settings:
        differ = _differences(saved, settings)
        raise ValueError(
            f"{path}: checkpoint of a run with other settings ({differ}); "
            "re-run with the same options or delete it to start over"
        )
    return state


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    parts = []
    for key, value in saved["config"].items():
        if wanted["config"].get(key) != value:
            parts.append(f"{key} {value} in the checkpoint, {wanted['config'].get(key)} now")
    if saved["model"] != wanted["model"]:
        parts.append(f"model {saved['model']!r} in the checkpoint, {wanted['model']!r} now")
    if saved["samples"] != wanted["samples"]:
        parts.append(
            f"{len(saved['samples'])} training images in the checkpoint, {len(wanted['samples'])} now"
        )
    return "; ".join(parts) or "other settings"


__all__ = ["FORMAT", "Checkpointing", "load_checkpoint", "run_settings", "save_checkpoint"]
