"""Normalise -> rescale -> tile with overlap -> forward -> blend -> labels.

Tiles start on multiples of the network's pooling size and are blended with
linear ramps over their overlaps, so a tiled prediction matches an untiled one
up to the network's border effects within the overlap (see the tests).

Speed (measured in ``benchmarks/segment_speed.py``, README "Performance"): the
network runs on a copy with batch norm folded into the convolutions, in
channels-last layout and, where the hardware computes it natively, bf16; on
CPU one tile at a time, whose working set stays in cache; tiles are spread
evenly so that no pixel is computed more often than the overlap requires.
Every long function here is a generator of :class:`Progress` records whose
last record carries the result; stop iterating to cancel.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.devices import choose_device, native_mixed_precision
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.progress import Progress, final_result, relay
from napari_unet.core.segmentation.axes import (
    guess_axes,
    normalise_axes,
    output_axes,
    output_shape,
    plane_indices,
    plane_order,
    plane_selector,
)
from napari_unet.core.segmentation.postprocess import PlaneNumbering, labels_from_outputs
from napari_unet.core.segmentation.preprocess import match_channels, percentile_normalise, rescale, resize_to
from napari_unet.core.training.targets import median_diameter

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


def tile_layout(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Edge and start offsets of the fewest tiles covering ``size`` pixels.

    Parameters
    ----------
    size : int
        Pixels to cover, a multiple of ``multiple``.
    tile : int
        Largest tile edge.
    overlap : int
        Least overlap between neighbouring tiles.
    multiple : int
        Tile edges and starts are multiples of this (the network's pooling grid).

    Returns
    -------
    (edge, starts)
        The tile edge (at most ``max(tile, multiple)``, rounded up to
        ``multiple``; shrunk as far as the overlap allows, so no pixel is
        computed more often than needed) and the evenly spread start offsets.

    """
    units, most = size // multiple, max(1, math.ceil(tile / multiple))
    if units <= most:
        return size, [0]
    shared = min(math.ceil(overlap / multiple), most - 1)
    count = math.ceil((units - shared) / (most - shared))
    edge = math.ceil((units + (count - 1) * shared) / count)
    starts = [round(i * (units - edge) / (count - 1)) * multiple for i in range(count)]
    return edge * multiple, starts


def inference_network(network: nn.Module) -> nn.Module:
    """An eval-mode copy of ``network`` with each batch norm folded into the convolution before it.

    The same function up to rounding, with one pass over the activations
    fewer per convolution.  ``network`` itself is left as it is.
    """
    folded = copy.deepcopy(network).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for index in range(len(module) - 1):
            conv, norm = module[index], module[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                module[index] = fuse_conv_bn_eval(conv, norm)
                module[index + 1] = nn.Identity()
    return folded


def _ramp(length: int, overlap: int, left: bool, right: bool) -> NDArray[np.float32]:
    weights = np.ones(length, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1)
    if overlap:
        if left:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if right:
            weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
    return weights


def read_plane(image: Any, axes: str, index: tuple[int, ...]) -> NDArray[Any]:
    """The (C, Y, X) plane at stack position ``index`` of ``image`` (axes normalised)."""
    plane = np.asarray(image[plane_selector(axes, index)]).transpose(plane_order(axes))
    return plane if plane.ndim == 3 else plane[None]


class Segmenter:
    """A model placed on a device, ready to segment arrays.

    Parameters
    ----------
    bundle : ModelBundle
    inference : InferenceConfig
    postprocess : PostprocessConfig, optional
        Defaults to the model's own.

    Attributes
    ----------
    network : torch.nn.Module
        The copy that runs (see :meth:`_prepare_network`); ``bundle.network`` is untouched.
    batch_size : int
        Tiles per forward pass, as configured or chosen for the device.
    amp : bool
        Whether the network runs in mixed precision.

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
        # objects are measured with default thresholds (a large minimum size would delete every object
        # of a view the estimate shrinks), but with the model's join threshold: a nucleus cut in two
        # would be measured as two small ones and the estimate would run away to smaller sizes
        self._sizing_postprocess = PostprocessConfig(
            fill_background=bundle.postprocess.fill_background,
            join_threshold=bundle.postprocess.join_threshold,
        )
        self.device = choose_device(self.inference.device)
        self.channels_last = self.device.type == "cpu"
        self.network = self._prepare_network(bundle.network)
        on_cpu = self.device.type == "cpu"
        self.batch_size = self.inference.batch_size or (1 if on_cpu else 4)
        amp = self.inference.amp
        self.amp = native_mixed_precision(self.device) if amp is None else amp and self.device.type != "mps"
        cuda_bf16 = self.device.type == "cuda" and torch.cuda.is_bf16_supported()
        self._amp_dtype = torch.bfloat16 if on_cpu or cuda_bf16 else torch.float16

    @property
    def heads(self) -> tuple[str, ...]:
        """Output heads of the model."""
        return self.bundle.config.heads

    # -- network --------------------------------------------------------------------------
    def _prepare_network(self, network: nn.Module) -> nn.Module:
        """The copy of ``network`` that runs: batch norm folded, on the device, channels-last on CPU."""
        prepared = inference_network(network).to(self.device)
        if self.channels_last:
            prepared = prepared.to(memory_format=torch.channels_last)
        return prepared

    def _forward(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        tensor = torch.from_numpy(batch).to(self.device)
        if self.channels_last:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        with (
            torch.inference_mode(),
            torch.autocast(self.device.type, dtype=self._amp_dtype, enabled=self.amp),
        ):
            logits = self.network(tensor)
        return torch.sigmoid(logits.float()).cpu().numpy()

    def _forward_augmented(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Outputs averaged over the batch and its three flips, each flipped back."""
        total = self._forward(batch)
        for axes in ((-2,), (-1,), (-2, -1)):
            flipped = np.ascontiguousarray(np.flip(batch, axes))
            total += np.flip(self._forward(flipped), axes)
        return total / 4

    def predict_normalised(
        self, image: NDArray[np.float32], augment: bool = False
    ) -> Generator[Progress, None, NDArray[np.float32]]:
        """Blend tiled network outputs over a normalised image at the model's scale.

        Parameters
        ----------
        image : ndarray of float32, shape (C, Y, X)
        augment : bool
            Average each tile's outputs over its flips (4x the network time).

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
        tile, overlap = self.inference.tile_size, self.inference.tile_overlap
        tile_h, starts_y = tile_layout(padded_h, tile, overlap, multiple)
        tile_w, starts_x = tile_layout(padded_w, tile, overlap, multiple)
        boxes = [(y, x) for y in starts_y for x in starts_x]
        heads = len(self.heads)
        if len(boxes) == 1:
            yield Progress(0, 1, "network")
            out = (self._forward_augmented if augment else self._forward)(image[None])[0]
            yield Progress(1, 1, "network")
            return out[:, :height, :width]
        total = np.zeros((heads, padded_h, padded_w), np.float32)
        weight = np.zeros((padded_h, padded_w), np.float32)
        chunks = [boxes[first : first + self.batch_size] for first in range(0, len(boxes), self.batch_size)]

        def tiles(chunk: list[tuple[int, int]]) -> NDArray[np.float32]:
            return np.ascontiguousarray(
                np.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in chunk])
            )

        done = 0
        with closing(self._predict_chunks(chunks, tiles, augment)) as predictions:
            for chunk, predicted in predictions:
                for (y, x), tile_out in zip(chunk, predicted, strict=True):
                    w = np.outer(
                        _ramp(tile_h, overlap, y > 0, y + tile_h < padded_h),
                        _ramp(tile_w, overlap, x > 0, x + tile_w < padded_w),
                    )
                    total[:, y : y + tile_h, x : x + tile_w] += tile_out * w
                    weight[y : y + tile_h, x : x + tile_w] += w
                done += len(chunk)
                yield Progress(done, len(boxes), f"tile {done}/{len(boxes)}")
        total /= weight
        return total[:, :height, :width]

    def _tile_workers(self) -> int:
        """Tiles computed at once: on CPU one per torch thread, each single-threaded; else 1.

        On CPU this beats splitting every operator across threads: no
        synchronisation between cores after each layer (which stalls all
        threads when one core is busy with something else), and each core
        keeps its own tile's data in its own cache.
        """
        return torch.get_num_threads() if self.device.type == "cpu" else 1

    def _predict_chunks(
        self,
        chunks: list[list[tuple[int, int]]],
        tiles: Callable[[list[tuple[int, int]]], NDArray[np.float32]],
        augment: bool = False,
    ) -> Generator[tuple[list[tuple[int, int]], NDArray[np.float32]], None, None]:
        """Network outputs of each chunk of tile positions, in order; threads per :meth:`_tile_workers`."""
        forward = self._forward_augmented if augment else self._forward
        workers = min(self._tile_workers(), len(chunks))
        if workers <= 1:
            for chunk in chunks:
                yield chunk, forward(tiles(chunk))
            return
        threads = torch.get_num_threads()
        pool = _thread_pool(workers, threads)
        pending: deque[tuple[list[tuple[int, int]], Future[NDArray[np.float32]]]] = deque()
        try:
            for chunk in chunks:
                pending.append((chunk, pool.submit(forward, tiles(chunk))))
                if len(pending) > workers:  # every worker busy and one chunk queued: hand one back
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:  # also when the caller stops early: drop queued chunks, wait for running ones
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)  # the workers changed torch's process-wide default

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

        Objects are measured with the default thresholds and minimum size,
        not the model's or the user's post-processing: a minimum size tuned
        for the model's scale (``phase-cells``: 300 px) would delete every
        object of the 4x smaller view, and the estimate must not move when a
        person drags a post-processing slider.
        """
        target = self.bundle.preprocess.object_diameter
        starts = (1.0, 0.25)
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and threads > 1:  # the two refinements are independent: one per core
            try:
                with _thread_pool(len(starts), threads) as pool:
                    found = list(pool.map(lambda start: self._refine_diameter(normalised, start), starts))
            finally:
                torch.set_num_threads(threads)  # the workers changed torch's process-wide default
        else:
            found = [self._refine_diameter(normalised, start) for start in starts]
        estimates = [estimate for estimate in found if estimate]
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
            seen = median_diameter(labels_from_outputs(probabilities, self.heads, self._sizing_postprocess))
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
        # the size estimate runs without augmentation: it only needs to count objects, and stays the
        # same with and without it
        probabilities = yield from self.predict_normalised(rescale(normalised, scale), self.inference.augment)
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

    def object_diameter(self, image: Any, axes: str, indices: Sequence[tuple[int, ...]]) -> float | None:
        """The diameter a stack is segmented at: given, or estimated on the middle plane of ``indices``.

        Parameters
        ----------
        image : array-like
            Read one plane at a time.
        axes : str
            Normalised axes of ``image``.
        indices : sequence of tuple
            Stack positions that will be segmented.

        Returns
        -------
        float or None
            ``None`` when the model does not rescale its input.

        """
        diameter = self.inference.diameter
        if diameter is None and self.bundle.preprocess.rescale:
            middle = read_plane(image, axes, indices[len(indices) // 2])
            diameter = self.estimate_diameter(self.normalise(middle))
        return diameter

    def predict_planes(
        self,
        image: Any,
        axes: str,
        indices: Sequence[tuple[int, ...]],
        diameter: float | None,
        sink: Callable[[tuple[int, ...], PlaneOutputs], None],
    ) -> Generator[Progress, None, None]:
        """Run the network on planes one at a time and hand each plane's outputs to ``sink``.

        Parameters
        ----------
        image : array-like
            Read one plane at a time (numpy, dask, zarr, memmap, a lazy TIFF).
        axes : str
            Normalised axes of ``image``.
        indices : sequence of tuple
            Stack positions, in the order to process them.
        diameter : float or None
            From :meth:`object_diameter`.
        sink : callable
            Receives ``(index, outputs)``; :meth:`labels` turns the outputs into
            labels numbered 1..N within the plane.

        Yields
        ------
        Progress
            Per batch of tiles, ``step`` out of 1000 across all ``indices``.

        """
        for number, index in enumerate(indices):

            def of_stack(record: Progress, number: int = number) -> Progress:
                fraction = (number + record.fraction) / len(indices)
                return Progress(
                    round(fraction * 1000), 1000, f"plane {number + 1}/{len(indices)}: {record.message}"
                )

            plane_outputs = yield from relay(
                self.predict_plane(read_plane(image, axes, index), diameter), of_stack
            )
            sink(index, plane_outputs)

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
            (see :class:`~napari_unet.core.segmentation.postprocess.PlaneNumbering`).
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
        indices = list(plane_indices(axes, shape)) if planes is None else list(planes)
        if not indices:
            raise ValueError("no planes to segment")
        labels = np.zeros(output_shape(axes, shape), np.int32)
        if self.inference.diameter is None and self.bundle.preprocess.rescale:
            yield Progress(0, len(indices), "estimating object size")
        diameter = self.object_diameter(image, axes, indices)
        outputs: dict[tuple[int, ...], PlaneOutputs] = {}
        numbering = PlaneNumbering(stitch)

        def keep(index: tuple[int, ...], plane_outputs: PlaneOutputs) -> None:
            labels[plane_selector(output_axes(axes), index)] = numbering.add(
                index, self.labels(plane_outputs)
            )
            if keep_outputs:
                outputs[index] = plane_outputs

        yield from self.predict_planes(image, axes, indices, diameter, keep)
        yield Progress(
            1000,
            1000,
            "done",
            result=Segmentation(labels, axes, str(self.device), diameter, outputs),
        )


def _thread_pool(workers: int, threads: int) -> ThreadPoolExecutor:
    """``workers`` threads sharing ``threads`` torch threads (the caller restores torch's setting after)."""
    share = max(1, threads // workers)
    return ThreadPoolExecutor(
        workers, thread_name_prefix="napari-unet", initializer=lambda: torch.set_num_threads(share)
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
