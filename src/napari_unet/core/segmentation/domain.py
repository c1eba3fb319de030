"""What an image is, against what a model can segment: blank planes, and images a model was not made for.

Pure numpy: the rules here are facts about the pixels, said to the person in
one line (the widget's status, the command line's notices, the batch table).
They inform; they never stop a segmentation.

The bundled models were trained on one kind of light each: ``nuclei`` on
fluorescence (bright objects on a dark background), ``nuclei-brightfield``,
``phase-cells`` and ``em-membranes`` on transmitted light (brightfield and
H&E-stained tissue, phase contrast, electron microscopy), where the background
is mid-grey to bright.  Where the median pixel of an
image lies between its 1st and 99.8th percentile (:func:`background_level`)
tells the two apart on the project's data: at most 0.19 in the 541 DSB 2018
fluorescence images, at least 0.25 in the 45 phase-contrast images, 0.49 in
the 24 EM slices and 0.43 in the 123 brightfield and stained (grey and RGB)
ones (``tests/core/segmentation/test_domain.py`` checks every image).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DARK_BACKGROUND = 0.22
"""A :func:`background_level` below this is a dark background: fluorescence."""

COLOUR_CHROMA = 0.03
"""Three channels whose mean spread (max - min, as a share of the range) reaches this are in colour."""


@dataclass(frozen=True)
class ModelDomain:
    """The kind of image a bundled model (and every version fine-tuned from it) was trained on.

    Attributes
    ----------
    family : str
        The bundled model's name.
    fluorescence : bool
        Bright objects on a dark background (else transmitted light).
    images : str
        What it was trained on, in a few words.

    """

    family: str
    fluorescence: bool
    images: str


BUNDLED_DOMAINS = {
    "nuclei": ModelDomain("nuclei", True, "fluorescence (bright nuclei on a dark background)"),
    "nuclei-brightfield": ModelDomain(
        "nuclei-brightfield",
        False,
        "brightfield and stained nuclei (dark on a light background, grey or colour)",
    ),
    "phase-cells": ModelDomain("phase-cells", False, "phase-contrast cells"),
    "em-membranes": ModelDomain("em-membranes", False, "electron microscopy"),
}
"""The bundled models' domains, by name."""


def is_blank(plane: Any) -> bool:
    """Whether a plane holds one value in each channel: there is nothing in it to segment.

    Parameters
    ----------
    plane : array-like, shape (C, Y, X) or (Y, X)
        Any pixel type; NaN and infinite pixels are ignored (normalisation
        reads them as background), so a plane with none finite is blank too.

    """
    values = np.asarray(plane)
    channels = values.reshape(-1, *values.shape[-2:]) if values.ndim >= 2 else values.reshape(1, 1, -1)
    for channel in channels:
        if channel.dtype.kind in "fc":
            channel = channel[np.isfinite(channel)]
        if channel.size and channel.min() != channel.max():
            return False
    return True


def blank_notice(blank: int, planes: int) -> str | None:
    """One line saying that ``blank`` of ``planes`` segmented planes were blank; ``None`` if none were."""
    if not blank:
        return None
    if planes == 1:
        return "The image is blank (constant): no objects."
    if blank == planes:
        return f"All {planes} planes are blank (constant): no objects."
    verb = "is" if blank == 1 else "are"
    return f"{blank} of {planes} planes {verb} blank (constant): no objects there."


def model_domain(names: Sequence[str | None]) -> ModelDomain | None:
    """The domain of the first of ``names`` that is a bundled model or a version of one (``nuclei-v3``).

    Pass a model's name, then its parent's and ancestors' (fine-tuned models
    keep their lineage), so a renamed version still finds its family.
    """
    for name in names:
        for family, domain in BUNDLED_DOMAINS.items():
            if name and re.fullmatch(rf"{re.escape(family)}(-v\d+)?", name):
                return domain
    return None


def _grey(plane: Any) -> np.ndarray:
    """Finite pixels of a (C, Y, X) or (Y, X) plane, channels averaged, at most ~1 M of them."""
    values = np.asarray(plane, np.float64)
    if values.ndim == 3:
        values = values.mean(axis=0)
    step = max(1, int(np.sqrt(values.size / 1_000_000)))
    values = values[::step, ::step]
    return values[np.isfinite(values)]


def background_level(plane: Any) -> float | None:
    """Where the median pixel lies between the 1st and 99.8th percentile: 0 dark ... 1 bright.

    ``None`` for a plane without two distinct values.
    """
    values = _grey(plane)
    if values.size == 0:
        return None
    # halved so that the differences cannot overflow for pixels near the float64 limits
    low, median, high = np.percentile(values, [1.0, 50.0, 99.8]) / 2
    if high <= low:
        return None
    return float(np.clip((median - low) / (high - low), 0.0, 1.0))


def is_colour(plane: Any) -> bool:
    """Whether a (C, Y, X) plane is a colour (RGB or RGBA) image whose channels differ."""
    values = np.asarray(plane)
    if values.ndim != 3 or values.shape[0] not in (3, 4):
        return False
    rgb = values[:3].astype(np.float32)
    spread = float(np.ptp(rgb)) if rgb.size else 0.0
    if not np.isfinite(spread) or spread == 0:
        return False
    chroma = np.nanmean(rgb.max(axis=0) - rgb.min(axis=0)) / spread
    return bool(chroma >= COLOUR_CHROMA)


def light_hint(plane: Any, model: str, domain: ModelDomain | None) -> str | None:
    """One line when ``plane`` is not the kind of light ``model`` was trained on, naming a better bundled model.

    A colour image with a bright background (brightfield, H&E) points to
    ``nuclei-brightfield``, a grey one with a bright background to it and to
    ``phase-cells``, a dark background (fluorescence) to ``nuclei``.
    """
    level = background_level(plane)
    if domain is None or level is None:
        return None
    dark = level < DARK_BACKGROUND
    if not dark and is_colour(plane) and domain.family != "nuclei-brightfield":
        return (
            "Hint: this is a colour image with a bright background (brightfield or stained tissue?), "
            f"but {model} was trained on {domain.images}: nuclei-brightfield segments nuclei in such images."
        )
    if domain.fluorescence and not dark:
        return (
            "Hint: the background is bright (brightfield, phase contrast or electron microscopy?), but "
            f"{model} was trained on {domain.images}: nuclei-brightfield suits brightfield nuclei, "
            "phase-cells phase-contrast cells."
        )
    if not domain.fluorescence and dark:
        return (
            "Hint: this looks like fluorescence (bright objects on a dark background), but "
            f"{model} was trained on {domain.images}: nuclei suits fluorescence better."
        )
    return None


def size_hint(
    diameter: float | None, model: str, sizes: tuple[float, float] | None, estimated: bool = True
) -> str | None:
    """One line when objects of ``diameter`` px are outside the ``sizes`` (px) ``model`` can bring to its own.

    ``sizes`` is ``None`` for a model that does not rescale images (there is
    no estimate to compare).  ``estimated``: the diameter was measured, not
    given (the line then says how to correct a wrong estimate).
    """
    if diameter is None or sizes is None or sizes[0] <= diameter <= sizes[1]:
        return None
    advice = "; if the estimate is wrong, give the diameter" if estimated else ""
    size = f"{diameter:.1f}" if diameter < 10 else f"{diameter:.0f}"
    return (
        f"Hint: objects here are about {size} px across, outside the "
        f"{sizes[0]:.0f}-{sizes[1]:.0f} px that {model} was trained for{advice}."
    )


__all__ = [
    "BUNDLED_DOMAINS",
    "COLOUR_CHROMA",
    "DARK_BACKGROUND",
    "ModelDomain",
    "background_level",
    "blank_notice",
    "is_blank",
    "is_colour",
    "light_hint",
    "model_domain",
    "size_hint",
]
