"""Build napari-unet's U-Net from keyword arguments, as bioimage.io packages describe architectures.

This file is copied into every exported bioimage.io package as the
``pytorch_state_dict`` weights' architecture source (``callable: build_unet``,
``kwargs``: the model's architecture); a bioimage.io consumer that runs it needs
napari-unet installed.  napari-unet itself imports it from the installed
package and never runs the copy inside a package.
"""

from __future__ import annotations

from typing import Any

from napari_unet.core.config import ModelConfig
from napari_unet.core.models.network import UNet


def build_unet(**kwargs: Any) -> UNet:
    """A :class:`~napari_unet.core.models.network.UNet` whose config has ``kwargs`` as fields.

    Parameters
    ----------
    **kwargs
        Fields of :class:`~napari_unet.core.config.ModelConfig` (``in_channels``,
        ``base_width``, ``depth``, ``norm``, ``heads``).

    """
    return UNet(ModelConfig(**kwargs))


__all__ = ["build_unet"]
