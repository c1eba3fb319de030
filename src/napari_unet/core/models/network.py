"""The 2-D U-Net (Ronneberger et al., 2015) and its building blocks.

No I/O, no device logic, no prints: this module only defines modules.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from napari_unet.core.config import ModelConfig


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    return nn.Identity()


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            _norm(norm, out_channels),
            nn.ReLU(inplace=True),
        )


class DownBlock(nn.Sequential):
    """2x2 max-pooling, then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        super().__init__(nn.MaxPool2d(2), ConvBlock(in_channels, out_channels, norm))


class UpBlock(nn.Module):
    """2x2 transposed convolution, concatenation with the skip, then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = ConvBlock(out_channels + skip_channels, out_channels, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` to the size of ``skip`` and fuse them."""
        return self.conv(torch.cat([self.up(x), skip], dim=1))


class UNet(nn.Module):
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
        super().__init__()
        self.config = config
        widths = [config.base_width * 2**level for level in range(config.depth + 1)]
        self.stem = ConvBlock(config.in_channels, widths[0], config.norm)
        self.down = nn.ModuleList(
            DownBlock(widths[i], widths[i + 1], config.norm) for i in range(config.depth)
        )
        self.up = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i], config.norm) for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], len(config.heads), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return per-head logits.

        Parameters
        ----------
        x : torch.Tensor
            float, shape ``(B, C, Y, X)`` with ``C == config.in_channels``; any
            ``Y, X >= 1``.  Sizes that are not a multiple of ``2**depth`` are
            reflect-padded internally (zero-padded where the image is too small
            to reflect) and the output is cropped back.

        Returns
        -------
        torch.Tensor
            Logits, shape ``(B, len(config.heads), Y, X)``; apply a sigmoid for
            probabilities.

        Raises
        ------
        ValueError
            If ``x`` is not 4-D or has the wrong number of channels.

        """
        if x.ndim != 4:
            raise ValueError(f"UNet expects a (B, C, Y, X) tensor, got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"UNet expects {self.config.in_channels} input channel(s), got {x.shape[1]}")
        height, width = x.shape[-2:]
        multiple = self.config.size_multiple
        pad_y = -height % multiple
        pad_x = -width % multiple
        if pad_y or pad_x:
            mode = "reflect" if pad_y < height and pad_x < width else "constant"
            x = F.pad(x, (0, pad_x, 0, pad_y), mode=mode)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = block(out, skips.pop())
        return self.head(out)[..., :height, :width]
