"""A model on a device, segmenting images plane by plane: normalise -> rescale -> tiles -> labels.

:class:`Segmenter` composes the parts: the object size and the working scale
(:mod:`~napari_unet.core.segmentation.sizing`, resolved once per image),
tiled prediction (:mod:`~napari_unet.core.segmentation.tiling`) and
post-processing (:mod:`~napari_unet.core.segmentation.postprocess`).  It owns
what depends on the device: the network copy that runs, its precision, and
test-time flips.

Speed (measured in ``benchmarks/segment_speed.py``; docs/performance.md): the
network runs on a copy with batch norm folded into the convolutions, in
channels-last layout and, where the hardware computes it natively, bf16; on
CPU one tile per torch thread (see :mod:`~napari_unet.core.segmentation.tiling`).
Every long function here is a generator of :class:`Progress` records that
returns its result (see :mod:`napari_unet.core.progress`); stop iterating to cancel.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator, Sequence
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
from napari_unet.core.models.lineage import lineage_names
from napari_unet.core.progress import Progress, relay, run
from napari_unet.core.segmentation.axes import (
    check_pixel_type,
    guess_axes,
    normalise_axes,
    output_axes,
    output_shape,
    plane_indices,
    plane_selector,
    read_plane,
)
from napari_unet.core.segmentation.domain import blank_notice, is_blank, light_hint, model_domain, size_hint
from napari_unet.core.segmentation.postprocess import PlaneNumbering, PlaneOutputs, plane_labels
from napari_unet.core.segmentation.preprocess import match_channels, percentile_normalise, rescale, resize_to
from napari_unet.core.segmentation.sizing import SCALE_LIMITS, estimate_diameter, working_scale
from napari_unet.core.segmentation.tiling import predict_tiled

__all__ = ["FLIPS", "PlaneOutputs", "Segmentation", "Segmenter", "inference_network", "segment_array"]

FLIPS: tuple[tuple[int, ...], ...] = ((), (-2,), (-1,), (-2, -1))
"""The image and its three mirror images (axes flipped) that test-time augmentation averages over."""


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
        Object diameter (pixels) the input was treated as having; ``None``
        when the model works at the native pixel size without one given, or
        the estimate found no object (the image then runs unscaled).
    outputs : dict
        Plane index -> :class:`PlaneOutputs`, kept when asked for (to re-run
        post-processing without the network).
    notices : list of str
        One line each about the image against the model, e.g. that it is
        blank (see :mod:`~napari_unet.core.segmentation.domain`).

    """

    labels: NDArray[np.int32]
    axes: str
    device: str
    diameter: float | None
    outputs: dict[tuple[int, ...], PlaneOutputs] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)


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

    def _forward_flipped(self, batch: NDArray[np.float32], axes: tuple[int, ...]) -> NDArray[np.float32]:
        """Outputs of ``batch`` flipped along ``axes``, flipped back."""
        return np.flip(self._forward(np.ascontiguousarray(np.flip(batch, axes))), axes)

    def _forward_augmented(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Outputs averaged over the batch and its three flips, each flipped back."""
        total = self._forward(batch)
        for axes in FLIPS[1:]:
            total += self._forward_flipped(batch, axes)
        return total / len(FLIPS)

    def _forward_flips(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Each flip's outputs (see :data:`FLIPS`), flipped back, one after the other: (N, 4 * H, Y, X)."""
        outputs = [self._forward(batch)] + [self._forward_flipped(batch, axes) for axes in FLIPS[1:]]
        return np.concatenate(outputs, axis=1)

    def _tile_workers(self) -> int:
        """Tiles computed at once: on CPU one per torch thread, each single-threaded; else 1.

        On CPU this beats splitting every operator across threads: no
        synchronisation between cores after each layer (which stalls all
        threads when one core is busy with something else), and each core
        keeps its own tile's data in its own cache.
        """
        return torch.get_num_threads() if self.device.type == "cpu" else 1

    def predict_normalised(
        self, image: NDArray[np.float32], augment: bool = False, flips: bool = False
    ) -> Generator[Progress, None, NDArray[np.float32]]:
        """Blend tiled network outputs over a normalised image at the model's scale.

        Parameters
        ----------
        image : ndarray of float32, shape (C, Y, X)
        augment : bool
            Average each tile's outputs over its flips (4x the network time).
        flips : bool
            Return each flip's outputs instead of their average (4x the network
            time and memory), in :data:`FLIPS` order.

        Yields
        ------
        Progress
            One per batch of tiles.

        Returns
        -------
        ndarray of float32, shape (H, Y, X), or (4 * H, Y, X) with ``flips``

        """
        forward = self._forward_flips if flips else self._forward_augmented if augment else self._forward
        return (
            yield from predict_tiled(
                image,
                forward,
                heads=len(self.heads) * (len(FLIPS) if flips else 1),
                tile=self.inference.tile_size,
                overlap=self.inference.tile_overlap,
                multiple=self.bundle.config.size_multiple,
                batch_size=self.batch_size,
                workers=self._tile_workers(),
            )
        )

    # -- object size ----------------------------------------------------------------------
    def normalise(self, plane: NDArray[Any]) -> NDArray[np.float32]:
        """(C, Y, X) or (Y, X) plane of any dtype -> normalised (C, Y, X) float32 with the model's channels."""
        pre = self.bundle.preprocess
        normalised = percentile_normalise(
            plane if plane.ndim == 3 else plane[None], pre.percentile_low, pre.percentile_high
        )
        return match_channels(normalised, self.bundle.config.in_channels)

    def scale_for(self, diameter: float | None) -> float:
        """Resize factor that brings objects of ``diameter`` pixels to the model's size (see :func:`working_scale`)."""
        return working_scale(diameter, self.bundle.preprocess)

    def estimate_diameter(self, normalised: NDArray[np.float32]) -> float | None:
        """Median object diameter (pixels) in a normalised (C, Y, X) plane; ``None`` if nothing is found.

        Measured with the model itself, without test-time augmentation (the
        estimate only counts objects); see
        :func:`~napari_unet.core.segmentation.sizing.estimate_diameter`.
        """
        return estimate_diameter(
            normalised,
            lambda image: run(self.predict_normalised(image)),
            self.heads,
            self.bundle.preprocess,
            self.bundle.postprocess,
            parallel=self.device.type == "cpu",
        )

    @property
    def estimates_size(self) -> bool:
        """Whether :meth:`object_diameter` measures the objects (no diameter given, the model rescales)."""
        return self.inference.diameter is None and self.bundle.preprocess.rescale

    def size_and_notices(
        self, image: Any, axes: str, indices: Sequence[tuple[int, ...]]
    ) -> tuple[float | None, list[str]]:
        """The diameter a stack is segmented at, and hints about the image, from one read of its middle plane.

        The diameter is resolved once per image; every plane is then segmented
        at :meth:`scale_for` of it.

        Parameters
        ----------
        image : array-like
            Read one plane at a time.
        axes : str
            Normalised axes of ``image``.
        indices : sequence of tuple
            Stack positions that will be segmented; the middle one is read.

        Returns
        -------
        diameter : float or None
            The given diameter; else the estimate; ``None`` when the model does
            not rescale (nothing to estimate) or the estimate found no object.
        notices : list of str
            See :meth:`image_notices`.

        """
        middle = read_plane(image, axes, indices[len(indices) // 2])
        diameter = self.object_diameter(middle)
        return diameter, self.image_notices(middle, diameter)

    def object_diameter(self, plane: NDArray[Any]) -> float | None:
        """The given diameter, else the one estimated on ``plane`` (see :meth:`size_and_notices`)."""
        if not self.estimates_size:
            return self.inference.diameter
        normalised = self.normalise(plane)
        if is_blank(plane):
            return None  # no objects to measure
        return self.estimate_diameter(normalised)

    def image_notices(self, plane: NDArray[Any], diameter: float | None) -> list[str]:
        """Hints about ``plane`` against what this model was trained for (information, not a block).

        The plane is compared with the kind of light of the bundled model this
        one descends from, and ``diameter`` (given or estimated) with the
        object sizes the model brings to the size it was trained at (see
        :mod:`~napari_unet.core.segmentation.domain`).
        """
        if is_blank(plane):
            return []  # said by the blank notice
        pre = self.bundle.preprocess
        low, high = SCALE_LIMITS
        sizes = (pre.object_diameter / high, pre.object_diameter / low) if pre.rescale else None
        hints = [
            light_hint(plane, self.bundle.name, model_domain(lineage_names(self.bundle))),
            size_hint(diameter, self.bundle.name, sizes, estimated=self.estimates_size),
        ]
        return [hint for hint in hints if hint]

    # -- planes ---------------------------------------------------------------------------
    def predict_plane(
        self, plane: NDArray[Any], scale: float, flips: bool = False
    ) -> Generator[Progress, None, PlaneOutputs]:
        """Network outputs for one (C, Y, X) or (Y, X) plane resized by ``scale``, resized back to the plane's size.

        A blank plane is not run through the network: it has no objects.  With
        ``flips``, each flip's outputs are kept too (``PlaneOutputs.flips``) and
        the probabilities are their average, as with test-time augmentation.
        """
        normalised = self.normalise(plane)  # first: it refuses pixel types that cannot be segmented
        if is_blank(plane):
            shape = (len(self.heads), *normalised.shape[-2:])
            return PlaneOutputs(probabilities=np.zeros(shape, np.float32), scale=scale, blank=True)
        augment = self.inference.augment
        outputs = yield from self.predict_normalised(rescale(normalised, scale), augment, flips)
        if scale != 1.0:
            outputs = resize_to(outputs, normalised.shape[-2:], order=1)
        if not flips:
            return PlaneOutputs(probabilities=outputs, scale=scale)
        per_flip = outputs.reshape(len(FLIPS), len(self.heads), *outputs.shape[-2:])
        return PlaneOutputs(probabilities=per_flip.mean(axis=0), scale=scale, flips=per_flip)

    def labels(
        self, outputs: PlaneOutputs, postprocess: PostprocessConfig | None = None
    ) -> NDArray[np.int32]:
        """Instance labels from cached outputs (fast: no network)."""
        return plane_labels(outputs, self.heads, postprocess or self.postprocess)

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
            From :meth:`object_diameter`; every plane runs at its working scale.
        sink : callable
            Receives ``(index, outputs)``; :meth:`labels` turns the outputs into
            labels numbered 1..N within the plane.

        Yields
        ------
        Progress
            Per batch of tiles, ``step`` out of 1000 across all ``indices``.

        """
        scale = self.scale_for(diameter)
        for number, index in enumerate(indices):

            def of_stack(record: Progress, number: int = number) -> Progress:
                fraction = (number + record.fraction) / len(indices)
                return Progress(
                    round(fraction * 1000), 1000, f"plane {number + 1}/{len(indices)}: {record.message}"
                )

            plane_outputs = yield from relay(
                self.predict_plane(read_plane(image, axes, index), scale), of_stack
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
    ) -> Generator[Progress, None, Segmentation]:
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
            Per batch of tiles.

        Returns
        -------
        Segmentation

        """
        check_pixel_type(image.dtype)
        shape = tuple(int(n) for n in image.shape)
        axes = normalise_axes(axes or guess_axes(shape), shape)
        indices = list(plane_indices(axes, shape)) if planes is None else list(planes)
        if not indices:
            raise ValueError("no planes to segment")
        labels = np.zeros(output_shape(axes, shape), np.int32)
        if self.estimates_size:
            yield Progress(0, len(indices), "estimating object size")
        diameter, hints = self.size_and_notices(image, axes, indices)
        outputs: dict[tuple[int, ...], PlaneOutputs] = {}
        numbering = PlaneNumbering(stitch)
        blank: list[tuple[int, ...]] = []

        def keep(index: tuple[int, ...], plane_outputs: PlaneOutputs) -> None:
            labels[plane_selector(output_axes(axes), index)] = numbering.add(
                index, self.labels(plane_outputs)
            )
            if plane_outputs.blank:
                blank.append(index)
            if keep_outputs:
                outputs[index] = plane_outputs

        yield from self.predict_planes(image, axes, indices, diameter, keep)
        yield Progress(1000, 1000, "done")
        notice = blank_notice(len(blank), len(indices))
        notices = [notice, *hints] if notice else hints
        return Segmentation(labels, axes, str(self.device), diameter, outputs, notices)


def segment_array(
    image: Any,
    bundle: ModelBundle,
    axes: str | None = None,
    inference: InferenceConfig | None = None,
    postprocess: PostprocessConfig | None = None,
    stitch: bool = False,
) -> Segmentation:
    """Segment ``image`` in one call (no progress); see :meth:`Segmenter.segment`."""
    return run(Segmenter(bundle, inference, postprocess).segment(image, axes=axes, stitch=stitch))
