"""Frozen, validated configuration records.

Every long job is driven by one of these dataclasses.  They import only the
standard library, validate themselves on construction and round-trip through
plain JSON-compatible dictionaries (which is how model files store them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

HEAD_NAMES = ("foreground", "boundary", "distance")
"""Output heads a model may have, one channel each, all passed through a sigmoid.

- ``foreground``: probability that a pixel belongs to any object.
- ``boundary``: probability that a pixel lies on an object's outline.
- ``distance``: distance to the object's outline, divided by the object's own
  maximum distance (1 at an object's centre, 0 at its edge and in background).
"""

NormKind = Literal["batch", "group", "instance", "none"]
DeviceName = str  # "auto", "cpu", "cuda", "cuda:N" or "mps"; checked in weights.choose_device

_C = TypeVar("_C")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a 2-D U-Net.

    Parameters
    ----------
    in_channels : int
        Number of input channels (1 for grey-scale microscopy).
    base_width : int
        Feature channels at full resolution; doubled at each pooling level.
    depth : int
        Number of 2x2 poolings.  Inputs are padded internally to a multiple of
        ``2**depth``.
    norm : {"batch", "group", "instance", "none"}
        Normalisation layer after each convolution.
    heads : tuple of str
        Output channels, in order; each a name from :data:`HEAD_NAMES`.

    """

    in_channels: int = 1
    base_width: int = 16
    depth: int = 4
    norm: NormKind = "batch"
    heads: tuple[str, ...] = HEAD_NAMES

    def __post_init__(self) -> None:
        _check(self.in_channels >= 1, f"in_channels must be >= 1, got {self.in_channels}")
        _check(self.base_width >= 1, f"base_width must be >= 1, got {self.base_width}")
        _check(1 <= self.depth <= 6, f"depth must be between 1 and 6, got {self.depth}")
        _check(self.norm in ("batch", "group", "instance", "none"), f"unknown norm {self.norm!r}")
        object.__setattr__(self, "heads", tuple(self.heads))
        _check(len(self.heads) > 0, "a model needs at least one output head")
        for head in self.heads:
            _check(head in HEAD_NAMES, f"unknown head {head!r}; choose from {HEAD_NAMES}")
        _check(len(set(self.heads)) == len(self.heads), f"duplicate heads in {self.heads}")
        _check("foreground" in self.heads, "a model needs a 'foreground' head")

    @property
    def size_multiple(self) -> int:
        """Spatial sizes the network sees are padded to a multiple of this."""
        return 2**self.depth


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image is prepared for the network; stored with the model.

    Parameters
    ----------
    percentile_low, percentile_high : float
        Intensities at these percentiles map to 0 and 1.
    object_diameter : float
        Median object diameter in pixels that the model was trained at.
    rescale : bool
        Rescale inputs so that their objects appear at ``object_diameter``
        (off for models trained at the images' native pixel size, e.g. EM).

    """

    percentile_low: float = 1.0
    percentile_high: float = 99.8
    object_diameter: float = 24.0
    rescale: bool = True

    def __post_init__(self) -> None:
        _check(
            0.0 <= self.percentile_low < self.percentile_high <= 100.0,
            "percentiles must satisfy 0 <= low < high <= 100, "
            f"got {self.percentile_low}, {self.percentile_high}",
        )
        _check(self.object_diameter > 0, f"object_diameter must be > 0, got {self.object_diameter}")


@dataclass(frozen=True)
class PostprocessConfig:
    """Turning network outputs into instance labels.

    Parameters
    ----------
    foreground_threshold : float
        Pixels with foreground probability above this belong to an object.
    seed_threshold : float
        Seeds are connected regions where the normalised distance exceeds
        this value (and the boundary probability is below 0.5).
    min_size : int
        Objects smaller than this many pixels (at the model's scale) lose
        their seed: their pixels join the object they touch, and an object
        that touches none is removed.
    fill_background : bool
        Grow objects over the whole image (for EM, where the background is
        only the thin membranes between objects).
    join_threshold : float
        Touching objects are joined when the distance output along their
        border rises above this fraction of the lower object's peak (the
        border cuts through one object rather than running between two).
        1 joins nothing; lower joins more.  Used by models with a distance
        head.
    object_probability : float
        Objects whose mean foreground probability is below this are dropped
        (faint or doubtful detections; 0 keeps every object).

    """

    foreground_threshold: float = 0.5
    seed_threshold: float = 0.5
    min_size: int = 10
    fill_background: bool = False
    join_threshold: float = 1.0
    object_probability: float = 0.0

    def __post_init__(self) -> None:
        _check(0.0 < self.foreground_threshold < 1.0, "foreground_threshold must be in (0, 1)")
        _check(0.0 < self.seed_threshold < 1.0, "seed_threshold must be in (0, 1)")
        _check(self.min_size >= 0, f"min_size must be >= 0, got {self.min_size}")
        _check(0.0 < self.join_threshold <= 1.0, "join_threshold must be in (0, 1]")
        _check(0.0 <= self.object_probability < 1.0, "object_probability must be in [0, 1)")


@dataclass(frozen=True)
class InferenceConfig:
    """How a prediction is run.

    Parameters
    ----------
    tile_size : int
        Largest edge of the square tiles fed to the network (rounded up to the
        model's size multiple); tiles are shrunk to cover the image evenly.
        768 was fastest on CPU among 256-1024 (benchmarks/network_throughput.py)
        and leaves the fewest seams.
    tile_overlap : int
        Least number of pixels shared by neighbouring tiles; outputs are
        blended across them.
    batch_size : int or None
        Tiles per forward pass; ``None`` picks per device (1 on CPU, where a
        small working set stays in cache, 4 elsewhere).
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    diameter : float or None
        Median object diameter in the input, in pixels, as Cellpose's
        ``diameter``: a positive number is that diameter; ``None`` or ``0``
        (stored as ``None``) estimates it from the image with the model
        itself.  Models trained at the native pixel size
        (``PreprocessConfig.rescale`` off) never rescale.
    amp : bool or None
        Mixed precision: bf16 on CPU, bf16/fp16 on CUDA.  ``None`` uses it where
        the hardware computes it natively (CUDA, CPUs with AVX512-BF16 or AMX)
        and it was checked to keep the labels (docs/performance.md).
    augment : bool
        Average the outputs over each tile and its three flips (test-time
        augmentation, as Cellpose's ``augment``): four times the network time
        for somewhat steadier outlines and seeds.  The object size is
        estimated without it.

    """

    tile_size: int = 768
    tile_overlap: int = 64
    batch_size: int | None = None
    device: DeviceName = "auto"
    diameter: float | None = None
    amp: bool | None = None
    augment: bool = False

    def __post_init__(self) -> None:
        _check(self.tile_size >= 16, f"tile_size must be >= 16, got {self.tile_size}")
        _check(
            0 <= self.tile_overlap < self.tile_size,
            f"tile_overlap must be in [0, tile_size), got {self.tile_overlap}",
        )
        _check(
            self.batch_size is None or self.batch_size >= 1,
            f"batch_size must be None or >= 1, got {self.batch_size}",
        )
        _check(
            self.diameter is None or self.diameter >= 0,
            f"diameter must be None or >= 0 (0: estimate it), got {self.diameter}",
        )
        if self.diameter == 0:  # one meaning: 0 and None both estimate the diameter
            object.__setattr__(self, "diameter", None)


@dataclass(frozen=True)
class TrainingConfig:
    """A training or fine-tuning run.

    Parameters
    ----------
    steps : int
        Optimiser steps.
    batch_size : int
        Crops per step.
    crop_size : int
        Edge of the square training crops, in pixels at the model's scale.
    learning_rate : float
        Peak learning rate (one-cycle cosine schedule with warm-up).
    weight_decay : float
        AdamW weight decay.
    optimizer : {"adamw", "sgd"}
    scale_jitter : float
        Objects are shown at the model's diameter times a factor drawn
        log-uniformly from ``[1/scale_jitter, scale_jitter]``.
    aspect_jitter : float
        Objects are also stretched along a random direction by a factor drawn
        log-uniformly from ``[1/aspect_jitter, aspect_jitter]`` and squeezed
        across it by the same factor (area kept): round nuclei shown as
        elongated ones.  1 (the default) stretches nothing.
    elastic : float
        Elastic deformation strength in pixels (0 disables it).
    validate_every : int
        Steps between validation passes (0: only at the end).
    seed : int
        Seeds numpy and torch; the same seed and data give the same run.
    freeze_norm : bool
        Keep batch-norm statistics fixed (advisable for fine-tuning on a few
        images).
    amp : bool
        Mixed precision (bf16 on CPU, fp16/bf16 on CUDA).

    """

    steps: int = 1500
    batch_size: int = 8
    crop_size: int = 192
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    optimizer: Literal["adamw", "sgd"] = "adamw"
    scale_jitter: float = 2.0
    aspect_jitter: float = 1.0
    elastic: float = 4.0
    validate_every: int = 0
    seed: int = 0
    freeze_norm: bool = False
    amp: bool = False

    def __post_init__(self) -> None:
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.crop_size >= 32, f"crop_size must be >= 32, got {self.crop_size}")
        _check(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        _check(self.optimizer in ("adamw", "sgd"), f"unknown optimizer {self.optimizer!r}")
        _check(self.scale_jitter >= 1.0, f"scale_jitter must be >= 1, got {self.scale_jitter}")
        _check(self.aspect_jitter >= 1.0, f"aspect_jitter must be >= 1, got {self.aspect_jitter}")
        _check(self.elastic >= 0.0, f"elastic must be >= 0, got {self.elastic}")


def to_dict(config: Any) -> dict[str, Any]:
    """Return a JSON-compatible dictionary of a config dataclass."""
    out = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
    """Build ``cls`` from a dictionary, refusing unknown keys.

    Raises
    ------
    ValueError
        If ``data`` has keys that ``cls`` does not know, or values it rejects.

    """
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown field(s) {sorted(unknown)}")
    return cls(**data)


__all__ = [
    "HEAD_NAMES",
    "InferenceConfig",
    "ModelConfig",
    "PostprocessConfig",
    "PreprocessConfig",
    "TrainingConfig",
    "from_dict",
    "to_dict",
]
