"""Small models for tests that need a model, not an accurate one."""

from __future__ import annotations

from typing import Any

import torch

from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.network import UNet


def tiny_bundle(
    name: str = "tiny",
    seed: int = 0,
    provenance: dict[str, Any] | None = None,
    *,
    source: str = "",
    in_channels: int = 1,
    preprocess: PreprocessConfig | None = None,
    postprocess: PostprocessConfig | None = None,
) -> ModelBundle:
    """A randomly initialised (``seed``) U-Net of width 4 and depth 2, in evaluation mode.

    By default it works at the image's native scale and keeps every object
    (``rescale=False``, ``min_size=0``): fast, and it finds arbitrary objects.
    """
    torch.manual_seed(seed)
    return ModelBundle(
        network=UNet(ModelConfig(in_channels=in_channels, base_width=4, depth=2)).eval(),
        preprocess=preprocess if preprocess is not None else PreprocessConfig(rescale=False),
        postprocess=postprocess if postprocess is not None else PostprocessConfig(min_size=0),
        name=name,
        source=source,
        provenance=provenance if provenance is not None else {},
    )
