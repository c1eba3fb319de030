"""Labelled images -> training samples at the model's scale, and augmented crops.

Augmentation follows the U-Net paper's advice for small data sets: random
crops, flips and rotations, scale jitter, smooth elastic deformation, and
intensity changes (contrast, brightness, gamma, blur, noise, and for colour images
each channel's gain and offset a little apart).  All geometric changes
are one resampling of image, targets and mask together, so they stay aligned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from napari_unet.core.config import ModelConfig, PreprocessConfig
from napari_unet.core.segmentation.preprocess import match_channels, percentile_normalise, rescale
from napari_unet.core.segmentation.sizing import median_diameter
from napari_unet.core.training.targets import head_targets


@dataclass(frozen=True)
class TrainingSample:
    """One image at the model's scale with its targets.

    Attributes
    ----------
    image : ndarray of float32, shape (C, Y, X)
        Normalised image.
    targets : ndarray of float32, shape (H, Y, X)
        One target per head, values in [0, 1].
    mask : ndarray of float32, shape (Y, X)
        1 where the targets are known (reviewed), 0 where they must not teach.
    name : str
        Where the sample came from (file name or layer name).

    """

    image: NDArray[np.float32]
    targets: NDArray[np.float32]
    mask: NDArray[np.float32]
    name: str = ""


def prepare_sample(
    image: NDArray[np.generic],
    labels: NDArray[np.integer],
    model: ModelConfig,
    preprocess: PreprocessConfig,
    mask: NDArray[np.bool_] | None = None,
    name: str = "",
) -> TrainingSample:
    """Normalise, rescale and build targets for one labelled 2-D image.

    Parameters
    ----------
    image : ndarray, shape (Y, X) or (C, Y, X)
    labels : ndarray of int, shape (Y, X)
        Instance labels, 0 = background.
    model, preprocess : config
        The model's heads and channels; its normalisation and object diameter.
    mask : ndarray of bool, shape (Y, X), optional
        Reviewed pixels; all pixels when omitted.
    name : str
        Shown in errors and provenance.

    Raises
    ------
    ValueError
        If image and labels differ in shape.

    """
    image = np.asarray(image)
    labels = np.asarray(labels)
    if image.ndim == 2:
        image = image[None]
    if image.shape[-2:] != labels.shape:
        raise ValueError(f"{name or 'sample'}: image shape {image.shape[-2:]} != labels shape {labels.shape}")
    normalised = percentile_normalise(image, preprocess.percentile_low, preprocess.percentile_high)
    normalised = match_channels(normalised, model.in_channels)
    supervised = np.ones(labels.shape, bool) if mask is None else np.asarray(mask, bool)
    factor = 1.0
    if preprocess.rescale:
        diameter = median_diameter(labels[supervised] if mask is not None else labels)
        if diameter:
            factor = preprocess.object_diameter / diameter
    if factor != 1.0:
        normalised = rescale(normalised, factor, order=1)
        labels = rescale(labels, factor, order=0)
        supervised = rescale(supervised.astype(np.uint8), factor, order=0).astype(bool)
    return TrainingSample(
        image=normalised.astype(np.float32),
        targets=head_targets(labels, model.heads),
        mask=supervised.astype(np.float32),
        name=name,
    )


class CropSampler:
    """Draw augmented, fixed-size training batches from samples.

    Parameters
    ----------
    samples : list of TrainingSample
    crop_size : int
        Output crop edge in pixels.
    scale_jitter : float
        Scale factor drawn log-uniformly from ``[1/scale_jitter, scale_jitter]``.
    aspect_jitter : float
        Stretch along the crop's rows (and squeeze along its columns, keeping
        the area) by a factor drawn log-uniformly from
        ``[1/aspect_jitter, aspect_jitter]``; the random rotation then points
        the stretch anywhere.  1 draws nothing, so the crops of a seed are
        the same as without it.
    elastic : float
        Standard deviation of the elastic displacement in pixels.
    seed : int
        Seeds the sampler's own generators.

    """

    def __init__(
        self,
        samples: list[TrainingSample],
        crop_size: int,
        scale_jitter: float = 2.0,
        elastic: float = 4.0,
        seed: int = 0,
        aspect_jitter: float = 1.0,
    ) -> None:
        if not samples:
            raise ValueError("no training samples")
        self.samples = samples
        self.crop_size = crop_size
        self.scale_jitter = scale_jitter
        self.aspect_jitter = aspect_jitter
        self.elastic = elastic
        self.rng = np.random.default_rng(seed)
        self.torch_rng = torch.Generator().manual_seed(seed)
        weights = np.array([math.sqrt(float(s.mask.sum()) + 1.0) for s in samples])
        self.weights = weights / weights.sum()
        self._supervised = [np.flatnonzero(s.mask.ravel() > 0) for s in samples]

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(images, targets, masks)`` of shapes (B, C, S, S), (B, H, S, S), (B, 1, S, S)."""
        crops = [self._crop() for _ in range(batch_size)]
        images = torch.stack([c[0] for c in crops])
        targets = torch.stack([c[1] for c in crops])
        masks = torch.stack([c[2] for c in crops])
        return self._intensity(images), targets, masks

    def _crop(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = int(self.rng.choice(len(self.samples), p=self.weights))
        sample = self.samples[index]
        height, width = sample.mask.shape
        supervised = self._supervised[index]
        if supervised.size and self.rng.random() < 0.9:
            centre_flat = supervised[self.rng.integers(supervised.size)]
            cy, cx = divmod(int(centre_flat), width)
        else:
            cy, cx = self.rng.integers(height), self.rng.integers(width)

        size = self.crop_size
        scale = math.exp(self.rng.uniform(-1, 1) * math.log(self.scale_jitter))
        angle = self.rng.uniform(0, 2 * math.pi)
        flip = -1.0 if self.rng.random() < 0.5 else 1.0
        stretch = 1.0
        if self.aspect_jitter > 1.0:
            stretch = math.exp(self.rng.uniform(-1, 1) * math.log(self.aspect_jitter))
        offsets = (np.arange(size) - (size - 1) / 2) / scale
        # rows are stretched by sqrt(stretch), columns squeezed by as much: the area is kept
        u, v = np.meshgrid(offsets / math.sqrt(stretch), offsets * math.sqrt(stretch), indexing="ij")
        cos, sin = math.cos(angle), math.sin(angle)
        src_y = cy + cos * u - sin * v * flip
        src_x = cx + sin * u + cos * v * flip
        if self.elastic > 0:
            coarse = self.rng.normal(0, self.elastic, size=(2, 1, 5, 5)).astype(np.float32)
            field = F.interpolate(
                torch.from_numpy(coarse), size=(size, size), mode="bicubic", align_corners=True
            ).numpy()
            src_y = src_y + field[0, 0] / scale
            src_x = src_x + field[1, 0] / scale

        y0 = max(int(np.floor(src_y.min())) - 1, 0)
        y1 = min(int(np.ceil(src_y.max())) + 2, height)
        x0 = max(int(np.floor(src_x.min())) - 1, 0)
        x1 = min(int(np.ceil(src_x.max())) + 2, width)
        window = (slice(y0, y1), slice(x0, x1))
        grid = torch.from_numpy(
            np.stack(
                [(2 * (src_x - x0) + 1) / (x1 - x0) - 1, (2 * (src_y - y0) + 1) / (y1 - y0) - 1],
                axis=-1,
            ).astype(np.float32)
        )[None]
        image = torch.from_numpy(np.ascontiguousarray(sample.image[(slice(None), *window)]))[None]
        labelled = np.concatenate([sample.targets[(slice(None), *window)], sample.mask[window][None]], axis=0)
        image = F.grid_sample(image, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        labelled_t = F.grid_sample(
            torch.from_numpy(np.ascontiguousarray(labelled))[None],
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=False,
        )[0]
        mask = (labelled_t[-1:] > 0.99).float()
        return image[0], labelled_t[:-1].clamp(0, 1), mask

    def _intensity(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        shape = (batch, 1, 1, 1)
        rand = lambda: torch.rand(shape, generator=self.torch_rng)  # noqa: E731
        gamma = torch.exp((rand() * 2 - 1) * math.log(1.5))
        positive = images.clamp(min=0)
        images = torch.where(images > 0, positive.clamp(max=1) ** gamma + (positive - 1).clamp(min=0), images)
        contrast = 0.7 + 0.6 * rand()
        # a few very bright objects push the rest down, or a dim image is stretched far past 1:
        # show the network objects much brighter than the 99.8th percentile too
        contrast = torch.where(rand() < 0.25, 1.0 + 3.0 * rand(), contrast)
        images = images * contrast + (rand() - 0.5) * 0.2
        if images.shape[1] > 1:  # stains and white balance differ between labs: each channel a little apart
            channels = (batch, images.shape[1], 1, 1)
            gain = 1.0 + (torch.rand(channels, generator=self.torch_rng) - 0.5) * 0.3
            images = images * gain + (torch.rand(channels, generator=self.torch_rng) - 0.5) * 0.2
        images = self._blur(images, rand())
        noise = torch.randn(images.shape, generator=self.torch_rng) * (rand() * 0.05)
        return images + noise

    @staticmethod
    def _blur(images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """Blur a quarter of the crops (Gaussian, sigma 0.5 to 1.5 px): out-of-focus and lower-resolution images."""
        out = images.clone()
        for index, draw in enumerate(draws.flatten().tolist()):
            if draw >= 0.25:
                continue
            sigma = 0.5 + 4.0 * draw  # draw < 0.25: sigma in [0.5, 1.5)
            radius = max(1, round(2.5 * sigma))
            x = torch.arange(-radius, radius + 1, dtype=images.dtype)
            kernel = torch.exp(-(x**2) / (2 * sigma**2))
            kernel = kernel / kernel.sum()
            channels = images.shape[1]
            crop = F.pad(images[index : index + 1], (radius, radius, radius, radius), mode="reflect")
            crop = F.conv2d(crop, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
            out[index] = F.conv2d(crop, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)[
                0
            ]
        return out
