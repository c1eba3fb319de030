"""napari-unet: segment, correct and fine-tune a U-Net inside napari.

Importing this package loads neither torch, Qt nor napari. The Python API
(:mod:`napari_unet.api`: ``load_model``, ``segment``, ``fine_tune``, ``evaluate``,
``save_model``) is imported the first time one of its functions is used.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("evaluate", "fine_tune", "load_model", "save_model", "segment")

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Import the Python API on first use, so that ``import napari_unet`` stays light."""
    if name in _API:
        from napari_unet import api

        return getattr(api, name)
    raise AttributeError(f"module 'napari_unet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
