"""The 2-D U-Net (Ronneberger et al., 2015), in plain PyTorch: the one definition of napari-unet's network.

This file imports nothing but ``torch``.  It is copied as it is into every
exported bioimage.io package as the ``pytorch_state_dict`` weights'
architecture source (``callable: build_unet``, ``kwargs``: the model's
architecture), so a package runs where only ``torch`` and a bioimage.io
consumer are installed.  napari-unet's own
:class:`~napari_unet.core.models.network.UNet` is :class:`UNet2d` built from a
``ModelConfig``: one network, the same state dict keys and outputs.

The network is TorchScript-compatible (``torch.jit.script``): exported
TorchScript weights keep the padding below and so accept any input size too.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "group", "instance", "none")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """The normalisation after each convolution: one of :data:`NORMS`."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose from {NORMS}")


class ConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            norm_layer(norm, out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias),
            norm_layer(norm, out_channels),
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


class UNet2d(nn.Module):
    """A 2-D U-Net: ``depth`` poolings, widths doubling from ``base_width``, a 1x1 convolution head.

    Parameters
    ----------
    in_channels : int
        Input channels.
    out_channels : int
        Output channels (logits; napari-unet applies a sigmoid to each).
    base_width : int
        Feature channels at full resolution; doubled at each pooling level.
    depth : int
        Number of 2x2 poolings.
    norm : {"batch", "group", "instance", "none"}
        Normalisation after each convolution.

    """

    def __init__(self, in_channels: int, out_channels: int, base_width: int, depth: int, norm: str) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.size_multiple = 2**depth
        widths = [base_width * 2**level for level in range(depth + 1)]
        self.stem = ConvBlock(in_channels, widths[0], norm)
        self.down = nn.ModuleList(DownBlock(widths[i], widths[i + 1], norm) for i in range(depth))
        self.up = nn.ModuleList(
            UpBlock(widths[i + 1], widths[i], widths[i], norm) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits, one channel per output.

        Parameters
        ----------
        x : torch.Tensor
            float, shape ``(B, C, Y, X)`` with ``C == in_channels``; any
            ``Y, X >= 1``.  Sizes that are not a multiple of ``2**depth`` are
            reflect-padded at the bottom and right (zero-padded where the image
            is too small to reflect) and the output is cropped back.

        Returns
        -------
        torch.Tensor
            Shape ``(B, out_channels, Y, X)``.

        Raises
        ------
        ValueError
            If ``x`` is not 4-D or has the wrong number of channels.

        """
        if x.dim() != 4:
            raise ValueError("UNet expects a (B, C, Y, X) tensor, got " + str(x.dim()) + " dimension(s)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                "UNet expects " + str(self.in_channels) + " input channel(s), got " + str(x.shape[1])
            )
        height = x.shape[2]
        width = x.shape[3]
        pad_y = (self.size_multiple - height % self.size_multiple) % self.size_multiple
        pad_x = (self.size_multiple - width % self.size_multiple) % self.size_multiple
        if pad_y > 0 or pad_x > 0:
            mode = "reflect" if pad_y < height and pad_x < width else "constant"
            x = F.pad(x, [0, pad_x, 0, pad_y], mode=mode)
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = block(out, skips.pop())
        return self.head(out)[:, :, :height, :width]


def build_unet(
    in_channels: int = 1,
    base_width: int = 16,
    depth: int = 4,
    norm: str = "batch",
    heads: Any = ("foreground", "boundary", "distance"),
) -> UNet2d:
    """The network a napari-unet model file or bioimage.io package describes.

    Parameters
    ----------
    in_channels, base_width, depth, norm
        As in :class:`UNet2d`.
    heads : sequence of str
        Output channel names; one output channel each.

    """
    return UNet2d(in_channels, len(heads), base_width, depth, norm)


__all__ = ["ConvBlock", "DownBlock", "UNet2d", "UpBlock", "build_unet", "norm_layer"]
