"""Normalise -> rescale -> tile with overlap -> forward -> blend -> labels.

Tiles start on multiples of the network's pooling size and are blended with
linear ramps over their overlaps, so a tiled prediction matches an untiled one
up to the network's border effects within the overlap (see the tests).
Every long function here is a generator of :class:`Progress` records whose
last record carries the result; stop iterating to cancel.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from napari_unet.core.axes import (
    guess_axes,
    normalise_axes,
    output_axes,
    output_shape,
    plane_indices,
    plane_order,
    plane_selector,
)
from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.postprocess import PlaneNumbering, labels_from_outputs
from napari_unet.core.preprocess import match_channels, percentile_normalise, rescale, resize_to
from napari_unet.core.progress import Progress, final_result
from napari_unet.core.targets import median_diameter
from napari_unet.core.weights import ModelBundle, choose_device

_ESTIMATE_CROP = 512
_SCALE_LIMITS = (0.1, 4.0)  # beyond these, a mis-estimate costs more than it can gain


@dataclass
class PlaneOutputs:
    """Network outputs for one plane, at the plane's own resolution.

    Attributes
    ----------
    probabilities : ndarray of float32, shape (H, Y, X)
        Sigmoid outputs per head.
    scale : float
        Factor the plane was resized by before the network.

    """

    probabilities: NDArray[np.float32]
    scale: float


@dataclass
class Segmentation:
    """Result of :meth:`Segmenter.segment`.

    Attributes
    ----------
    labels : ndarray of int32, shape = input shape without channels
    axes : str
        Axes of the input (``labels`` has the same without ``C``).
    device : str
        Device that ran the network.
    diameter : float or None
        Object diameter (pixels) the input was treated as having.
    outputs : dict
        Plane index -> :class:`PlaneOutputs`, kept when asked for (to re-run
        post-processing without the network).

    """

    labels: NDArray[np.int32]
    axes: str
    device: str
    diameter: float | None
    outputs: dict[tuple[int, ...], PlaneOutputs] = field(default_factory=dict)


def tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``size`` pixels."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return [*starts, size - tile]


def _ramp(length: int, overlap: int, left: bool, right: bool) -> NDArray[np.float32]:
    weights = np.ones(length, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1)
    if overlap:
        if left:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if right:
            weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
    return weights


class Segmenter:
    """A model placed on a device, ready to segment arrays.

    Parameters
    ----------
    bundle : ModelBundle
    inference : InferenceConfig
    postprocess : PostprocessConfig, optional
        Defaults to the model's own.

    """

    def __init__(
        self,
        bundle: ModelBundle,
        inference: InferenceConfig | None = None,
        postprocess: PostprocessConfig | None = None,
    ) -> None:
        self.bundle = bundle
        self.inference = inference or InferenceConfig()
        self.postprocess = postprocess or bundle.postprocess
        self.device = choose_device(self.inference.device)
        self.network = bundle.network.to(self.device).eval()
        self._channels_last = self.device.type == "cpu"
        if self._channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)

    @property
    def heads(self) -> tuple[str, ...]:
        """Output heads of the model."""
        return self.bundle.config.heads

    # -- network --------------------------------------------------------------------------
    def _forward(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        tensor = torch.from_numpy(batch).to(self.device)
        if self._channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        amp = self.inference.amp and self.device.type in ("cuda", "cpu")
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=dtype, enabled=amp):
            logits = self.network(tensor)
        return torch.sigmoid(logits.float()).cpu().numpy()

    def predict_normalised(
        self, image: NDArray[np.float32]
    ) -> Generator[Progress, None, NDArray[np.float32]]:
        """Blend tiled network outputs over a normalised image at the model's scale.

        Parameters
        ----------
        image : ndarray of float32, shape (C, Y, X)

        Yields
        ------
        Progress
            One per batch of tiles.

        Returns
        -------
        ndarray of float32, shape (H, Y, X)

        """
        multiple = self.bundle.config.size_multiple
        _, height, width = image.shape
        pad_y, pad_x = -height % multiple, -width % multiple
        if pad_y or pad_x:
            mode = "reflect" if pad_y < height and pad_x < width else "constant"
            image = np.pad(image, ((0, 0), (0, pad_y), (0, pad_x)), mode=mode)
        padded_h, padded_w = image.shape[1:]
        tile = math.ceil(self.inference.tile_size / multiple) * multiple
        overlap = self.inference.tile_overlap
        stride = max(multiple, (tile - overlap) // multiple * multiple)
        tile_h, tile_w = min(tile, padded_h), min(tile, padded_w)
        boxes = [
            (y, x)
            for y in tile_starts(padded_h, tile_h, stride)
            for x in tile_starts(padded_w, tile_w, stride)
        ]
        heads = len(self.heads)
        if len(boxes) == 1:
            yield Progress(0, 1, "network")
            out = self._forward(image[None])[0]
            yield Progress(1, 1, "network")
            return out[:, :height, :width]
        total = np.zeros((heads, padded_h, padded_w), np.float32)
        weight = np.zeros((padded_h, padded_w), np.float32)
        for first in range(0, len(boxes), self.inference.batch_size):
            chunk = boxes[first : first + self.inference.batch_size]
            batch = np.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in chunk])
            predicted = self._forward(np.ascontiguousarray(batch))
            for (y, x), tile_out in zip(chunk, predicted, strict=True):
                w = np.outer(
                    _ramp(tile_h, overlap, y > 0, y + tile_h < padded_h),
                    _ramp(tile_w, overlap, x > 0, x + tile_w < padded_w),
                )
                total[:, y : y + tile_h, x : x + tile_w] += tile_out * w
                weight[y : y + tile_h, x : x + tile_w] += w
            done = first + len(chunk)
            yield Progress(done, len(boxes), f"tile {done}/{len(boxes)}")
        total /= weight
        return total[:, :height, :width]

    # -- one plane ------------------------------------------------------------------------
    def normalise(self, plane: NDArray[Any]) -> NDArray[np.float32]:
        """(C, Y, X) plane of any dtype -> normalised float32 with the model's channels."""
        pre = self.bundle.preprocess
        normalised = percentile_normalise(plane, pre.percentile_low, pre.percentile_high)
        return match_channels(normalised, self.bundle.config.in_channels)

    def scale_for(self, diameter: float | None) -> float:
        """Resize factor that brings objects of ``diameter`` pixels to the model's size."""
        pre = self.bundle.preprocess
        if not diameter or not pre.rescale:
            return 1.0
        return float(np.clip(pre.object_diameter / diameter, *_SCALE_LIMITS))

    def estimate_diameter(self, normalised: NDArray[np.float32]) -> float | None:
        """Median object diameter (pixels) in a normalised (C, Y, X) plane.

        A model sees objects far from its own size poorly: much larger ones it
        cuts into pieces of about its own size.  So the estimate is refined
        from two starting scales, the model's own and a 4x smaller view (where
        large objects look normal), each re-measured at the scale its estimate
        implies.  The largest estimate wins, preferring those whose final
        pass saw objects near the model's size: cut-up objects only ever look
        smaller.  ``None`` if nothing is found.
        """
        target = self.bundle.preprocess.object_diameter
        estimates = [e for e in (self._refine_diameter(normalised, s) for s in (1.0, 0.25)) if e]
        if not estimates:
            return None
        near = [d for d, seen in estimates if abs(math.log(seen / target)) < math.log(1.6)]
        return max(near or [d for d, _ in estimates])

    def _refine_diameter(self, normalised: NDArray[np.float32], scale: float) -> tuple[float, float] | None:
        """(diameter in the plane, diameter as the last pass saw it), from a start ``scale``."""
        result: tuple[float, float] | None = None
        for _ in range(3):
            crop_edge = int(_ESTIMATE_CROP / scale)
            _, height, width = normalised.shape
            y0 = max(0, (height - crop_edge) // 2)
            x0 = max(0, (width - crop_edge) // 2)
            crop = normalised[:, y0 : y0 + crop_edge, x0 : x0 + crop_edge]
            probabilities = _run(self.predict_normalised(rescale(crop, scale)))
            seen = median_diameter(labels_from_outputs(probabilities, self.heads, self.postprocess))
            if seen is None:
                return result
            result = (seen / scale, seen)
            new_scale = self.scale_for(seen / scale)
            if abs(math.log(new_scale / scale)) < math.log(1.15):
                break
            scale = new_scale
        return result

    def predict_plane(
        self, plane: NDArray[Any], diameter: float | None
    ) -> Generator[Progress, None, PlaneOutputs]:
        """Network outputs for one (C, Y, X) plane, resized back to the plane's size."""
        normalised = self.normalise(plane)
        scale = self.scale_for(diameter)
        probabilities = yield from self.predict_normalised(rescale(normalised, scale))
        if scale != 1.0:
            probabilities = resize_to(probabilities, normalised.shape[-2:], order=1)
        return PlaneOutputs(probabilities=probabilities, scale=scale)

    def labels(
        self, outputs: PlaneOutputs, postprocess: PostprocessConfig | None = None
    ) -> NDArray[np.int32]:
        """Instance labels from cached outputs (fast: no network)."""
        config = postprocess or self.postprocess
        return labels_from_outputs(
            outputs.probabilities, self.heads, config, min_size=config.min_size / outputs.scale**2
        )

    # -- arrays ---------------------------------------------------------------------------
    def segment(
        self,
        image: Any,
        axes: str | None = None,
        stitch: bool = False,
        keep_outputs: bool = False,
        planes: list[tuple[int, ...]] | None = None,
    ) -> Generator[Progress, None, None]:
        """Segment an image or stack plane by plane.

        Parameters
        ----------
        image : array-like
            numpy, dask, zarr or memmap; read one plane at a time.
        axes : str, optional
            e.g. ``"YX"``, ``"CYX"``, ``"YXC"``, ``"ZYX"``, ``"TZCYX"``; guessed
            from the shape when omitted.
        stitch : bool
            Join objects across consecutive planes of the last stack axis
            (3-D objects from a Z stack) instead of numbering planes apart
            (see :class:`~napari_unet.core.postprocess.PlaneNumbering`).
        keep_outputs : bool
            Keep per-plane network outputs on the result.
        planes : list of tuple, optional
            Stack indices to segment (default all); other planes stay 0.

        Yields
        ------
        Progress
            Per batch of tiles; the last record's ``result`` is a :class:`Segmentation`.

        """
        shape = tuple(int(n) for n in image.shape)
        axes = normalise_axes(axes or guess_axes(shape), shape)
        order = plane_order(axes)
        indices = list(plane_indices(axes, shape)) if planes is None else list(planes)
        if not indices:
            raise ValueError("no planes to segment")
        labels = np.zeros(output_shape(axes, shape), np.int32)

        def read_plane(index: tuple[int, ...]) -> NDArray[Any]:
            plane = np.asarray(image[plane_selector(axes, index)]).transpose(order)
            return plane if plane.ndim == 3 else plane[None]

        diameter = self.inference.diameter
        if diameter is None and self.bundle.preprocess.rescale:
            yield Progress(0, len(indices), "estimating object size")
            diameter = self.estimate_diameter(self.normalise(read_plane(indices[len(indices) // 2])))
        outputs: dict[tuple[int, ...], PlaneOutputs] = {}
        numbering = PlaneNumbering(stitch)
        for number, index in enumerate(indices):
            predicted = self.predict_plane(read_plane(index), diameter)
            while True:
                try:
                    record = next(predicted)
                except StopIteration as stop:
                    plane_outputs: PlaneOutputs = stop.value
                    break
                fraction = (number + record.fraction) / len(indices)
                yield Progress(
                    round(fraction * 1000), 1000, f"plane {number + 1}/{len(indices)}: {record.message}"
                )
            plane_labels = numbering.add(index, self.labels(plane_outputs))
            labels[plane_selector(output_axes(axes), index)] = plane_labels
            if keep_outputs:
                outputs[index] = plane_outputs
        yield Progress(
            1000,
            1000,
            "done",
            result=Segmentation(labels, axes, str(self.device), diameter, outputs),
        )


def _run(generator: Generator[Progress, None, Any]) -> Any:
    """Exhaust a progress generator and return its return value."""
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def segment_array(
    image: Any,
    bundle: ModelBundle,
    axes: str | None = None,
    inference: InferenceConfig | None = None,
    postprocess: PostprocessConfig | None = None,
    stitch: bool = False,
) -> Segmentation:
    """Segment ``image`` in one call (no progress); see :meth:`Segmenter.segment`."""
    result = final_result(Segmenter(bundle, inference, postprocess).segment(image, axes=axes, stitch=stitch))
    assert isinstance(result, Segmentation)
    return result
