"""What tests share: small models for tests that need a model, not an accurate one; loading the scripts."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
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


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
"""The repository's maintenance scripts (not part of the package)."""


def load_script(name: str) -> ModuleType:
    """Import ``scripts/<name>.py`` as a module, to test its functions."""
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
