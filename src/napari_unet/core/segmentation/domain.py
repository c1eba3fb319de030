"""What an image is, against what a model can segment: blank planes.

Pure numpy: the rules here are facts about the pixels, said to the person in
one line (the widget's status, the command line's notices, the batch table).
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


__all__ = ["blank_notice", "is_blank"]
