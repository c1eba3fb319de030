"""napari-unet's 2-D U-Net (Ronneberger et al., 2015), built from a :class:`ModelConfig`.

The layers and the forward pass are defined once, in plain PyTorch, in
:mod:`napari_unet.core.models.bioimageio.architecture` (the file exported
bioimage.io packages carry as their architecture source); :class:`UNet` is
that network with its :class:`~napari_unet.core.config.ModelConfig` attached.

No I/O, no device logic, no prints: this module only defines modules.
"""

from __future__ import annotations

from napari_unet.core.config import ModelConfig
from napari_unet.core.models.bioimageio.architecture import UNet2d


class UNet(UNet2d):
    """A 2-D U-Net with one sigmoid-activated output channel per head.

    Parameters
    ----------
    config : ModelConfig
        Architecture (input channels, base width, depth, normalisation, heads).

    Examples
    --------
    >>> net = UNet(ModelConfig(base_width=8, depth=3))
    >>> net(torch.zeros(2, 1, 100, 70)).shape
    torch.Size([2, 3, 100, 70])

    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config.in_channels, len(config.heads), config.base_width, config.depth, config.norm)
        self.config = config
