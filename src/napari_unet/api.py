"""The Python API for notebooks and scripts: load, segment, fine-tune, evaluate, save.

These functions do what the widget and the ``napari-unet`` command do, for arrays in
memory:

```python
import napari_unet

model = napari_unet.load_model("nuclei")
labels = napari_unet.segment(image, model, axes="ZYX")
tuned = napari_unet.fine_tune(model, [image[30]], [corrected_plane], steps=50)
scores = napari_unet.evaluate(tuned, test_images, test_labels)
napari_unet.save_model(tuned)  # the next version in your model folder, e.g. nuclei-v1
```

``import napari_unet`` loads no torch; this module is imported the first time one of
these functions is used.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from napari_unet.core.config import InferenceConfig
from napari_unet.core.evaluation.evaluate import evaluate_bundle
from napari_unet.core.models import files, registry, store
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.lineage import image_record
from napari_unet.core.progress import Progress, run
from napari_unet.core.segmentation.segmenter import Segmenter
from napari_unet.core.training.folders import folder_config
from napari_unet.core.training.loop import train
from napari_unet.core.training.samples import prepare_sample

__all__ = ["ModelBundle", "evaluate", "fine_tune", "load_model", "save_model", "segment"]

Model: TypeAlias = "str | os.PathLike[str] | ModelBundle"
"""A bundled model's name, one of your stored models' names, a model file, or a loaded model."""

Images: TypeAlias = "Sequence[ArrayLike] | NDArray[Any]"
"""2-D planes: a list of arrays, or one array whose first axis runs over the planes."""


def load_model(name_or_path: str | os.PathLike[str] = registry.DEFAULT_MODEL) -> ModelBundle:
    """Load a bundled model, one of your stored models, or a model file.

    Loading never runs code from the file (``torch.load(weights_only=True)``).

    Parameters
    ----------
    name_or_path : str or path-like
        ``"nuclei"``, ``"phase-cells"`` or ``"em-membranes"`` (bundled); the name of one of
        your models (``napari-unet models`` lists them, e.g. ``"nuclei-v2"``); or the path of
        a model file (``.pt``) or a napari-unet bioimage.io package (``.zip``).

    Returns
    -------
    ModelBundle
        The network (on the CPU, in evaluation mode) with its normalisation,
        post-processing defaults, name and provenance.

    Raises
    ------
    napari_unet.core.models.files.ModelFileError
        If no model has that name, or the file is not a usable model file (the message
        names the file and the reason).

    """
    return registry.load_model(registry.resolve_model(name_or_path))


def _model(model: Model) -> ModelBundle:
    return model if isinstance(model, ModelBundle) else load_model(model)


def segment(
    image: ArrayLike,
    model: Model = registry.DEFAULT_MODEL,
    axes: str | None = None,
    diameter: float | None = None,
    *,
    stitch: bool = False,
    device: str = "auto",
    augment: bool = False,
    probability: float | None = None,
    seed_threshold: float | None = None,
    min_size: int | None = None,
    join_threshold: float | None = None,
    object_probability: float | None = None,
    progress: Callable[[Progress], object] | None = None,
) -> NDArray[np.int32]:
    """Segment an image or a stack into instance labels.

    Parameters
    ----------
    image : array-like
        2-D or more, any pixel type (NumPy, Dask, memmap; read one plane at a time).
    model : str, path-like or ModelBundle
        See :func:`load_model`; default ``"nuclei"``.
    axes : str, optional
        The image's axes, e.g. ``"YX"``, ``"CYX"``, ``"YXC"`` (RGB), ``"ZYX"``,
        ``"TZCYX"``; guessed from the shape when omitted. Stacks and time series are
        segmented plane by plane.
    diameter : float, optional
        Typical object diameter in pixels; estimated from the image when omitted (the
        image is rescaled so that its objects appear at the size the model was trained at).
    stitch : bool
        Join objects across consecutive planes of a stack into 3-D objects; otherwise
        every plane's objects get their own ids.
    device : str
        ``"auto"`` (CUDA, then Apple MPS, then CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``
        or ``"mps"``.
    augment : bool
        Average the network's outputs over flips (test-time augmentation; four times the
        network time).
    probability, seed_threshold, min_size, join_threshold, object_probability : optional
        Post-processing settings (the widget's controls); each defaults to the model's own.
        A pixel is foreground above ``probability``; a lower ``seed_threshold`` joins
        objects cut in pieces; objects under ``min_size`` pixels (at the model's scale) join
        the object they touch; touching objects are joined when the border between them runs
        above ``join_threshold`` times the smaller one's distance peak (1 joins nothing);
        objects whose mean foreground probability is under ``object_probability`` are
        dropped (0 keeps all).
    progress : callable, optional
        Called with every :class:`~napari_unet.core.progress.Progress` record.

    Returns
    -------
    ndarray of int32
        Instance labels (0 = background) with the image's shape without its channel axis.

    Raises
    ------
    ValueError
        If the image or axes cannot be segmented, or a setting is out of range (the message
        says which).

    """
    bundle = _model(model)
    overrides = {
        "foreground_threshold": probability,
        "seed_threshold": seed_threshold,
        "min_size": min_size,
        "join_threshold": join_threshold,
        "object_probability": object_probability,
    }
    postprocess = dataclasses.replace(
        bundle.postprocess, **{key: value for key, value in overrides.items() if value is not None}
    )
    inference = InferenceConfig(device=device, diameter=diameter, augment=augment)
    segmenter = Segmenter(bundle, inference, postprocess)
    return run(segmenter.segment(image, axes=axes, stitch=stitch), progress).labels


def _pairs(images: Images, labels: Images) -> list[tuple[NDArray[Any], NDArray[Any]]]:
    """``(image, labels)`` planes with images as (Y, X) or (C, Y, X)."""
    if isinstance(labels, np.ndarray) and labels.ndim == 2:
        image_list: list[Any] = [images]
        label_list: list[Any] = [labels]
    else:
        image_list, label_list = list(images), list(labels)
    if len(image_list) != len(label_list):
        raise ValueError(f"{len(image_list)} images but {len(label_list)} label images")
    if not image_list:
        raise ValueError("no images given")
    pairs = []
    for index, (image, label) in enumerate(zip(image_list, label_list, strict=True)):
        image, label = np.asarray(image), np.asarray(label)
        if label.ndim != 2 or not np.issubdtype(label.dtype, np.integer):
            raise ValueError(f"labels {index}: need a 2-D integer array, got {label.ndim}-D {label.dtype}")
        if image.ndim == 3 and image.shape[:2] == label.shape and image.shape[-2:] != label.shape:
            image = np.moveaxis(image, -1, 0)  # (Y, X, C) colour -> (C, Y, X)
        if image.ndim not in (2, 3) or image.shape[-2:] != label.shape:
            raise ValueError(f"image {index}: shape {image.shape} does not match its labels {label.shape}")
        pairs.append((image, label))
    return pairs


def fine_tune(
    model: Model,
    images: Images,
    labels: Images,
    steps: int | None = None,
    *,
    masks: Sequence[ArrayLike] | None = None,
    learning_rate: float | None = None,
    batch_size: int | None = None,
    crop_size: int | None = None,
    train_norm: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[Progress], object] | None = None,
) -> ModelBundle:
    """Train a copy of a model on labelled 2-D images (the model itself is left untouched).

    The defaults are those of ``napari-unet train --from``
    (:data:`~napari_unet.core.training.folders.FROM_MODEL_PRESET`): 400 AdamW steps of 8
    crops of 192² at a peak learning rate of 5e-4 with warm-up and cosine decay, batch-norm
    statistics frozen, mixed precision, augmented crops (flips, rotations, scale jitter,
    elastic deformation, intensity changes). Unlike ``train --from``, no labelled objects
    are held out to pick the best snapshot: every step trains, and the last step's weights
    are returned. Score the result with :func:`evaluate` on images it did not train on.

    Parameters
    ----------
    model : str, path-like or ModelBundle
        The starting model, see :func:`load_model`.
    images : list of arrays, or one array of planes
        2-D images, each ``(Y, X)``, ``(C, Y, X)`` or ``(Y, X, C)``; or one ``(N, Y, X)``
        array. A single image may be passed with a single 2-D ``labels`` array.
    labels : list of arrays, or one array of planes
        Instance labels for each image (0 = background), each ``(Y, X)`` integers.
    steps : int, optional
        Optimiser steps (default 400).
    masks : list of arrays, optional
        Per image, ``True`` where the labels were checked; elsewhere the image teaches
        nothing. By default every pixel counts, so unlabelled objects are learnt as
        background.
    learning_rate, batch_size, crop_size : optional
        Peak learning rate, crops per step, crop edge in pixels at the model's scale
        (defaults 5e-4, 8, 192).
    train_norm : bool
        Keep updating batch-norm statistics (for large data sets; frozen by default).
    seed : int
        The same seed, data and device give the same model.
    device : str
        As for :func:`segment`.
    progress : callable, optional
        Called with a :class:`~napari_unet.core.progress.Progress` record per step
        (``record.metrics["loss"]``).

    Returns
    -------
    ModelBundle
        The trained copy, under the parent's name; its provenance records the parent,
        its ancestors, the images (SHA-256 of the pixels), the steps and settings. Keep it
        with :func:`save_model`.

    Raises
    ------
    ValueError
        If images and labels do not pair up, or a setting is out of range.

    """
    bundle = _model(model)
    pairs = _pairs(images, labels)
    if masks is not None and len(masks) != len(pairs):
        raise ValueError(f"{len(pairs)} images but {len(masks)} masks")
    samples = [
        prepare_sample(
            image,
            label,
            bundle.config,
            bundle.preprocess,
            mask=None if masks is None else np.asarray(masks[index], bool),
            name=f"image {index}",
        )
        for index, (image, label) in enumerate(pairs)
    ]
    config = folder_config(
        True,
        steps=steps,
        batch_size=batch_size,
        crop_size=crop_size,
        learning_rate=learning_rate,
        seed=seed,
        freeze_norm=not train_norm,
    )
    provenance = {"images": [image_record(f"image {i}", image) for i, (image, _) in enumerate(pairs)]}
    return run(train(bundle, samples, config, device=device, provenance=provenance), progress)


def evaluate(
    model: Model,
    images: Images,
    labels: Images,
    *,
    diameter: float | None = None,
    device: str = "auto",
    augment: bool = False,
) -> dict[str, float]:
    """Score a model on labelled 2-D images, as ``napari-unet evaluate`` does.

    Parameters
    ----------
    model : str, path-like or ModelBundle
        See :func:`load_model`.
    images, labels : list of arrays, or one array of planes
        As for :func:`fine_tune`.
    diameter : float, optional
        Object diameter in pixels; estimated per image when omitted.
    device : str
        As for :func:`segment`.
    augment : bool
        Test-time augmentation, as for :func:`segment`.

    Returns
    -------
    dict of str to float
        ``ap50`` (AP@0.5: TP / (TP + FP + FN), one-to-one matching at IoU ≥ 0.5, counts
        pooled over the images), ``ap75``, ``ap50_95`` (mean AP over IoU 0.5, 0.55, …,
        0.95), ``foreground_iou`` and ``adapted_rand_error`` (means over images), and
        ``images`` (how many).

    """
    pairs = [(f"image {i}", image, label) for i, (image, label) in enumerate(_pairs(images, labels))]
    inference = InferenceConfig(device=device, diameter=diameter, augment=augment)
    return evaluate_bundle(_model(model), pairs, inference=inference)


def save_model(model: ModelBundle, path: str | os.PathLike[str] | None = None) -> Path:
    """Save a model to a file, or as the next version in your model folder.

    Parameters
    ----------
    model : ModelBundle
        E.g. the result of :func:`fine_tune`.
    path : str or path-like, optional
        The file to write (written atomically: complete or not at all). When omitted,
        the model is saved as the next version of its family in your model folder
        (``nuclei`` → ``nuclei-v1`` → ``nuclei-v2`` …), never overwriting one, and
        ``model.name`` becomes that version's name.

    Returns
    -------
    Path
        The file written.

    """
    if path is None:
        return store.save_version(model).path
    return files.save_model(model, path)
