"""bioimage.io model packages: export a model with its lineage and validate the package.

Export (:func:`export_package`) writes a zip that ``bioimageio.spec`` (model
spec 0.5) validates, also offline: ``pytorch_state_dict`` weights
whose architecture source is
:mod:`napari_unet.core.models.bioimageio.architecture` (plain PyTorch: the
package runs where only ``torch`` and a bioimage.io consumer are installed),
TorchScript weights scripted from the same network, a test input (the image
given, else synthetic discs) and the network's output on it, a cover showing
that image and its outlines (without an image given, a real image of a bundled
family's kind where an installed package ships one:
:mod:`napari_unet.core.models.bioimageio.covers`),
the model card, licence, authors, citations, ``training_data`` and ``parent``
from the lineage, and napari-unet's own model file contents under
``config.napari_unet`` (configs, provenance, weights hash).  Reading a package
back is :mod:`napari_unet.core.models.bioimageio.reader`'s job.

Pre- and post-processing in bioimage.io terms: the input is the raw image
(batch, channel, y, x), scaled with ``scale_range`` at the model's percentiles
and clipped as napari-unet clips; the output is the sigmoid of the network (one
channel per head).  Outputs declare a halo (:func:`output_halo`, the network's
full reach) and inputs any size from the smallest block that keeps one pooling
cell (:func:`input_size_rule`), so bioimage.io's blocks that start on the whole
image's pooling grid equal its whole-image prediction.  Two differences are
bioimageio.core's and no package setting changes them (the model card says how
to avoid them): it moves the last block of a row or column back to end at the
image's edge, off the grid when the side is no multiple of ``2**depth``; and it
takes a whole image's ``scale_range`` percentiles with the halo padded on, a
tiled image's without.  What bioimage.io cannot
express (rescaling to the model's object size, the seeded watershed turning
outputs into instance labels) is stated in the description and kept in
``config.napari_unet`` for napari-unet.
"""

from __future__ import annotations

import gc
import getpass
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from numpy.typing import NDArray

from napari_unet import __version__
from napari_unet.core.config import ModelConfig, to_dict
from napari_unet.core.io.atomic import atomic_path
from napari_unet.core.io.files import write_overlay
from napari_unet.core.models.bioimageio.architecture import build_unet
from napari_unet.core.models.bioimageio.covers import (
    COVER_IMAGES,
    NO_COVER_IMAGE,
    CoverImage,
    cover_documentation,
    read_cover_image,
)
from napari_unet.core.models.bioimageio.datasets import (
    BUNDLED_TRAINING_DATA,
    TrainingData,
    dataset_documentation,
)
from napari_unet.core.models.files import (
    ModelBundle,
    model_header,
)
from napari_unet.core.models.registry import BUNDLED_MODELS
from napari_unet.core.models.store import family_of
from napari_unet.core.segmentation.preprocess import CLIP_RANGE

INSTALL_HINT = "pip install 'napari-unet[bioimageio]'"
DEFAULT_LICENSE = "BSD-3-Clause"
BUNDLED_AUTHOR = "napari-unet developers"
ARCHITECTURE_FILE = "bioimageio_unet.py"
ARCHITECTURE_CALLABLE = "build_unet"
COVER_HEIGHT = 256

_UNET_DOI = "10.1007/978-3-319-24574-4_28"
_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9_+\- ()]+")


class BioimageioUnavailable(ImportError):
    """``bioimageio.spec`` is not installed; the message says how to install it."""


def _spec() -> Any:
    try:
        import bioimageio.spec  # noqa: F401
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise BioimageioUnavailable(
            f"exporting bioimage.io packages needs the bioimageio.spec library: {INSTALL_HINT}"
        ) from None
    return v0_5


# ---------------------------------------------------------------------------------------------
# what the exported network computes, in bioimage.io's terms


def scale_range(image: NDArray[Any], low: float, high: float, eps: float = 1e-6) -> NDArray[np.float32]:
    """bioimage.io's ``scale_range`` preprocessing over the spatial axes of a ``(C, Y, X)`` image.

    ``(x - p_low) / (p_high - p_low + eps)`` per channel, as a bioimage.io
    consumer computes it from the package's description.
    """
    data = np.asarray(image, dtype=np.float32)
    low_values, high_values = np.percentile(data, [low, high], axis=(-2, -1), keepdims=True)
    return ((data - low_values) / (high_values - low_values + eps)).astype(np.float32)


def package_preprocessing(bundle: ModelBundle, image: NDArray[Any]) -> NDArray[np.float32]:
    """The package's preprocessing of a ``(C, Y, X)`` image: ``scale_range``, then ``clip``.

    The same normalisation as napari-unet's
    :func:`~napari_unet.core.segmentation.preprocess.percentile_normalise` (percentiles mapped
    to 0 and 1, clipped to :data:`~napari_unet.core.segmentation.preprocess.CLIP_RANGE`).
    """
    scaled = scale_range(image, bundle.preprocess.percentile_low, bundle.preprocess.percentile_high)
    return np.clip(scaled, *CLIP_RANGE).astype(np.float32)


def network_outputs(bundle: ModelBundle, image: NDArray[Any]) -> NDArray[np.float32]:
    """The package's output tensor for one input: sigmoid of the network on the preprocessed image.

    Parameters
    ----------
    image : ndarray, shape (C, Y, X)
        Raw intensities, ``C == bundle.config.in_channels``.

    Returns
    -------
    ndarray of float32, shape (H, Y, X)
        One probability map per head.

    """
    with torch.inference_mode():
        logits = bundle.network.eval()(torch.from_numpy(package_preprocessing(bundle, image)[None]))
    return torch.sigmoid(logits)[0].numpy().astype(np.float32)


def output_halo(config: ModelConfig) -> int:
    """Pixels bioimage.io crops from each side of a block's outputs: ``7 * 2**depth - 5`` (107 at depth 4).

    The farthest an output pixel's inputs reach (its receptive field's radius,
    measured in the tests): no kept output of a block sees the block's edge.
    """
    return 7 * config.size_multiple - 5


def input_size_rule(config: ModelConfig) -> tuple[int, int]:
    """``(min, step)`` of the package's input height and width: ``(2 * halo + 2**depth, 1)``.

    The network takes any size (it pads to a multiple of ``2**depth`` inside),
    so the step is 1, the smallest bioimage.io allows: a 520 x 696 image is a
    valid input.  The spec asks for more than twice the halo; the minimum
    leaves one pooling cell inside it, so a bioimage.io block of ``min + n``
    pixels keeps ``2**depth + n`` and stays on the pooling grid when ``n`` is
    a multiple of ``2**depth``.
    """
    return 2 * output_halo(config) + config.size_multiple, 1


def synthetic_test_image(bundle: ModelBundle, size: int = 256, seed: int = 0) -> NDArray[np.float32]:
    """A test input at the model's scale: bright discs of the model's object size on a noisy background.

    Returns
    -------
    ndarray of float32, shape (C, size, size)

    """
    rng = np.random.default_rng(seed)
    radius = max(2.0, bundle.preprocess.object_diameter / 2)
    yy, xx = np.mgrid[:size, :size]
    image = rng.normal(100.0, 8.0, (size, size))
    spacing = int(3 * radius)
    for y in range(spacing // 2, size - int(radius), spacing):
        for x in range(spacing // 2, size - int(radius), spacing):
            cy, cx = y + rng.uniform(-radius / 3, radius / 3), x + rng.uniform(-radius / 3, radius / 3)
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] += rng.uniform(300, 600)
    return np.repeat(image[None].astype(np.float32), bundle.config.in_channels, axis=0)


def _test_input(bundle: ModelBundle, image: NDArray[Any]) -> NDArray[np.float32]:
    minimum, _ = input_size_rule(bundle.config)
    data = np.asarray(image, dtype=np.float32)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3 or data.shape[0] != bundle.config.in_channels:
        raise ValueError(
            f"the test image must be (Y, X) or (C, Y, X) with C = {bundle.config.in_channels}, "
            f"got shape {tuple(np.shape(image))}"
        )
    if min(data.shape[1:]) < minimum:
        raise ValueError(
            f"the test image must be at least {minimum} x {minimum} pixels (the package's smallest "
            f"input), got {data.shape[1]} x {data.shape[2]}"
        )
    # a centred crop of at most 512 x 512 keeps the package small
    height, width = min(data.shape[1], 512), min(data.shape[2], 512)
    top, left = (data.shape[1] - height) // 2, (data.shape[2] - width) // 2
    return np.ascontiguousarray(data[:, top : top + height, left : left + width])


def _cover(path: Path, image: NDArray[np.float32], outputs: NDArray[np.float32], bundle: ModelBundle) -> None:
    """Input beside the instance labels' outlines over it: a 2:1 PNG at most 256 px high."""
    from napari_unet.core.segmentation.postprocess import labels_from_outputs

    labels = labels_from_outputs(outputs, bundle.config.heads, bundle.postprocess)
    # bioimage.io asks for covers under 500 kB
    write_overlay(path, image[:1], labels, beside=True, max_height=COVER_HEIGHT)


def _real_cover(path: Path, image: NDArray[Any], bundle: ModelBundle) -> None:
    """A real image at its own size beside the outlines of napari-unet's segmentation of it (rescaled inside)."""
    from napari_unet.core.config import InferenceConfig
    from napari_unet.core.segmentation.segmenter import segment_array

    # on the CPU in float32: the same cover wherever the package is exported
    labels = segment_array(image, bundle, inference=InferenceConfig(device="cpu", amp=False)).labels
    shown = np.moveaxis(image, -1, 0) if image.ndim == 3 else image  # a colour image is read YXC
    write_overlay(path, shown.astype(np.float32), labels, beside=True, max_height=COVER_HEIGHT)


def _choose_cover(
    root: str | None, test_image: NDArray[Any] | None
) -> tuple[CoverImage, NDArray[Any]] | None:
    """The real image a bundled family's cover shows when no image was given, if it is installed."""
    if test_image is not None or root not in COVER_IMAGES:
        return None
    image = read_cover_image(COVER_IMAGES[root])
    return None if image is None else (COVER_IMAGES[root], image)


def _cover_note(root: str | None, test_image: NDArray[Any] | None, cover: CoverImage | None) -> str:
    """The model card's paragraph on the cover."""
    if cover is not None:
        return (
            "The cover shows a real image of the model's kind beside the model's outlines over it "
            f"(also described in `cover.md`). {cover.description}\n\n**Source:** {cover.source}\n\n"
            f"**Licence:** {cover.license}"
        )
    if test_image is not None:
        return "The cover shows the test input beside the model's outlines over it."
    if root in COVER_IMAGES:
        return (
            "The cover shows the test input beside the model's outlines over it: the real image for "
            f"this model's cover comes with a package that was not installed ({COVER_IMAGES[root].install})."
        )
    reason = f": {NO_COVER_IMAGE[root]}" if root in NO_COVER_IMAGE else ""
    return f"The cover shows the test input beside the model's outlines over it (no real image{reason})."


def _torchscript(
    bundle: ModelBundle, image: NDArray[np.float32], probabilities: NDArray[np.float32]
) -> torch.jit.ScriptModule:
    """The package's network, scripted (padding included); checked to give ``probabilities`` for ``image``."""
    network = build_unet(**to_dict(bundle.config))
    network.load_state_dict(bundle.network.state_dict())
    with warnings.catch_warnings():
        # torch deprecates TorchScript in favour of torch.export, but bioimage.io's "torchscript"
        # weights format (what deepImageJ and others run) is TorchScript
        warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
        scripted = torch.jit.script(network.eval())
    with torch.no_grad():
        got = torch.sigmoid(scripted(torch.from_numpy(package_preprocessing(bundle, image)[None])))[0].numpy()
    if got.shape != probabilities.shape or not np.allclose(got, probabilities, atol=1e-4):
        raise RuntimeError("the TorchScript network does not reproduce the network")
    return scripted


# ---------------------------------------------------------------------------------------------
# metadata


def _safe_name(text: str) -> str:
    cleaned = _NAME_CHARACTERS.sub("-", text).strip(" -")
    return cleaned if len(cleaned) >= 5 else f"napari-unet {cleaned}".strip()


def _yaml_value(value: Any) -> Any:
    """``value`` with tuples as lists, non-finite floats as None and other objects as strings."""
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_yaml_value(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _bundled_root(bundle: ModelBundle) -> str | None:
    """The bundled model family this model descends from (by name or lineage), if any."""
    names = [bundle.name, str(bundle.provenance.get("parent", ""))]
    ancestors = bundle.provenance.get("ancestors")
    if isinstance(ancestors, list):
        names += [str(a.get("name", "")) for a in ancestors if isinstance(a, dict)]
    for name in reversed(names):  # oldest first: a renamed model still finds its origin
        if family_of(name) in BUNDLED_MODELS:
            return family_of(name)
    return None


def _choose_test_image(bundle: ModelBundle, image: NDArray[Any] | None) -> tuple[NDArray[Any], str]:
    """The package's test input before cropping, and a sentence saying where it comes from."""
    if image is not None:
        return image, "an image supplied when the package was exported"
    return synthetic_test_image(bundle), (
        "synthetic: bright discs of the model's object size on noise (no image of the model's kind "
        "was given; `napari-unet export --image` takes one)"
    )


def _usage(bundle: ModelBundle) -> str:
    low, high = bundle.preprocess.percentile_low, bundle.preprocess.percentile_high
    minimum, _ = input_size_rule(bundle.config)
    multiple = bundle.config.size_multiple
    halo = output_halo(bundle.config)
    return (
        "\n## Using this package\n\n"
        "Input: one image, axes (batch, channel, y, x), raw intensities; the package scales them with "
        f"`scale_range` ({low}th to {high}th percentile). Objects should be about "
        f"{bundle.preprocess.object_diameter:g} px across"
        + (" (rescale the image first)" if bundle.preprocess.rescale else "")
        + ". Output: sigmoid probabilities, one channel per head "
        f"({', '.join(bundle.config.heads)}). napari-unet turns them into instance labels with a seeded "
        "watershed (`config.napari_unet.postprocess`); open the zip with "
        "`napari-unet segment --model THIS.zip` or the napari widget.\n\n"
        f"Sizes: the package takes any height and width from {minimum} px (the network pads to a "
        f"multiple of {multiple} inside). Tiled prediction crops a halo of {halo} px (the receptive field's radius) "
        f"from each side of a block of {minimum} + n px. The network pools {multiple} x {multiple} "
        "pixels, so a tile equals the whole-image prediction when it starts on the whole image's "
        f"pooling grid: choose n as a multiple of {multiple} (e.g. `bioimageio predict --blockwise "
        f"{10 * multiple}`), and give images whose height and width are multiples of {multiple} (pad "
        f"others at the bottom and right, e.g. 520 x 696 to 528 x 704). Otherwise bioimage.io shifts "
        "the last block of each row and column back to end at the image's edge, off the grid, and its "
        "outputs differ slightly from the whole-image ones. bioimage.io also takes the `scale_range` "
        "percentiles of a whole image with the halo padded on, and those of a tiled one without: "
        "normalise the image yourself and skip the preprocessing for tiles equal to the whole image."
    )


def _model_card(bundle: ModelBundle, root: str | None, test_image: str, cover: str) -> str:
    from napari_unet.core.models.store import describe

    parts = []
    card = resources.files("napari_unet") / "weights" / f"{root}.md" if root else None
    if card is not None and card.is_file():
        parts.append(card.read_text(encoding="utf-8").rstrip())
        if bundle.name != root:
            parts.append(f"\n## This model: `{bundle.name}`, fine-tuned from `{root}` (card above)")
    else:
        parts.append(f"# Model card: `{bundle.name}`")
    parts.append(_usage(bundle))
    parts.append(f"\n## Test input and cover\n\nThe test input is {test_image}.\n\n{cover}")
    parts.append(
        "\n## Lineage and provenance\n\n```\n" + "\n".join(describe(bundle, with_file=False)) + "\n```"
    )
    metrics = bundle.provenance.get("metrics") or {}
    recorded = ", ".join(f"{k} {v}" for k, v in metrics.items()) if metrics else "none recorded"
    if root and bundle.name == root:
        validation = "See **Metrics** in the model card above."
    elif root:
        validation = (
            f"The metrics in the card above are of `{root}`, not of this fine-tuned version. "
            f"Metrics recorded while fine-tuning: {recorded}."
        )
    else:
        validation = f"Metrics recorded in training: {recorded}."
    parts.append(f"\n## Validation\n\n{validation}")
    return "\n".join(parts) + "\n"


def _authors(v0_5: Any, authors: list[str] | None, bundled: bool) -> list[Any]:
    names = authors or [BUNDLED_AUTHOR if bundled else getpass.getuser()]
    return [v0_5.Author(name=name) for name in names]


def _bundled_dataset(v0_5: Any, data: TrainingData, work: Path) -> Any:
    from bioimageio.spec.dataset.v0_3 import DatasetDescr

    documentation = work / "training_data.md"
    documentation.write_text(dataset_documentation(data), encoding="utf-8")
    if data.license is None:  # terms that are no SPDX licence travel as a file
        terms = work / "training_data_terms.md"
        terms.write_text(f"# Terms of use: {data.name}\n\n{data.terms}\n", encoding="utf-8")
    return DatasetDescr(
        name=data.name,
        description=data.description,
        authors=[v0_5.Author(name=name) for name in data.authors],
        documentation=v0_5.FileDescr(source=documentation),
        license=data.license or v0_5.FileDescr(source=terms),
        tags=list(data.tags),
        source=data.source,
        cite=[v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in data.citations],
    )


def _training_data(v0_5: Any, bundle: ModelBundle, root: str | None, authors: list[Any], work: Path) -> Any:
    from bioimageio.spec.dataset.v0_3 import DatasetDescr

    images = bundle.provenance.get("images")
    is_bundled = bundle.name in BUNDLED_MODELS
    if (is_bundled or not isinstance(images, list)) and root in BUNDLED_TRAINING_DATA:
        return _bundled_dataset(v0_5, BUNDLED_TRAINING_DATA[root], work)
    if isinstance(images, list) and images:
        description = (
            f"{len(images)} image(s) corrected by the user and learned from in fine-tuning; their "
            "names and SHA-256 hashes are in config.napari_unet.provenance.images (pixels not included)."
        )[:1024]
        documentation = work / "training_data.md"
        parent = f" `{root}` was fine-tuned on them." if root else ""
        documentation.write_text(
            f"# Training images of `{bundle.name}`\n\n{description}{parent}\n", encoding="utf-8"
        )
        # their licence and where they can be found are the user's to say (not known here)
        return DatasetDescr(
            name=_safe_name(f"{bundle.name} training images"),
            description=description,
            authors=authors,
            documentation=v0_5.FileDescr(source=documentation),
            tags=["napari-unet", "fine-tuning", "user-corrections"],
        )
    return None


def _parent(v0_5: Any, bundle: ModelBundle) -> Any:
    parent = str(bundle.provenance.get("parent") or "")
    if not parent or parent == bundle.name:
        return None
    # the parent's napari-unet name (lower case): not an id in the bioimage.io collection; its
    # weights hash is in config.napari_unet.provenance.parent_hash
    identifier = re.sub(r"[^a-z0-9_\-.]+", "-", parent.lower()).strip("-./") or "unnamed"
    return v0_5.LinkedModel(id=v0_5.ModelId(identifier))


def _citations(v0_5: Any, root: str | None) -> list[Any]:
    cite = [v0_5.CiteEntry(text="Ronneberger et al., U-Net (MICCAI 2015)", doi=v0_5.Doi(_UNET_DOI))]
    if root in BUNDLED_TRAINING_DATA:
        data = BUNDLED_TRAINING_DATA[root]
        cite += [v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in data.citations]
    return cite


def _tensors(v0_5: Any, bundle: ModelBundle, input_path: Path, output_path: Path) -> tuple[Any, Any]:
    minimum, step = input_size_rule(bundle.config)
    halo = output_halo(bundle.config)
    space = v0_5.ParameterizedSize(min=minimum, step=step)
    channels = [f"channel{i}" for i in range(bundle.config.in_channels)]
    input_tensor = v0_5.InputTensorDescr(
        id=v0_5.TensorId("raw"),
        description=(
            f"raw image at the model's object size; tiles on its {bundle.config.size_multiple} px "
            "pooling grid equal whole-image outputs"
        ),
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[v0_5.Identifier(c) for c in channels]),
            v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=space),
            v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=space),
        ],
        test_tensor=v0_5.FileDescr(source=input_path),
        sample_tensor=v0_5.FileDescr(source=input_path.with_suffix(".tif")),
        preprocessing=[
            v0_5.ScaleRangeDescr(
                kwargs=v0_5.ScaleRangeKwargs(
                    axes=[v0_5.AxisId("y"), v0_5.AxisId("x")],
                    min_percentile=bundle.preprocess.percentile_low,
                    max_percentile=bundle.preprocess.percentile_high,
                )
            ),
            v0_5.ClipDescr(kwargs=v0_5.ClipKwargs(min=CLIP_RANGE[0], max=CLIP_RANGE[1])),
        ],
    )
    output_tensor = v0_5.OutputTensorDescr(
        id=v0_5.TensorId("probabilities"),
        description=f"sigmoid outputs: {', '.join(bundle.config.heads)}",
        axes=[
            v0_5.BatchAxis(),
            v0_5.ChannelAxis(channel_names=[v0_5.Identifier(h) for h in bundle.config.heads]),
            v0_5.SpaceOutputAxisWithHalo(
                id=v0_5.AxisId("y"),
                size=v0_5.SizeReference(tensor_id=v0_5.TensorId("raw"), axis_id=v0_5.AxisId("y")),
                halo=halo,
            ),
            v0_5.SpaceOutputAxisWithHalo(
                id=v0_5.AxisId("x"),
                size=v0_5.SizeReference(tensor_id=v0_5.TensorId("raw"), axis_id=v0_5.AxisId("x")),
                halo=halo,
            ),
        ],
        test_tensor=v0_5.FileDescr(source=output_path),
        sample_tensor=v0_5.FileDescr(source=output_path.with_suffix(".tif")),
        postprocessing=[v0_5.SigmoidDescr()],
    )
    return input_tensor, output_tensor


def _torch_version() -> str:
    return torch.__version__.split("+")[0]


def export_package(
    bundle: ModelBundle,
    output: str | os.PathLike[str],
    test_image: NDArray[Any] | None = None,
    authors: list[str] | None = None,
    license: str | None = None,
) -> Path:
    """Write ``bundle`` as a bioimage.io model package (zip) that ``bioimageio.spec`` validates.

    Parameters
    ----------
    bundle : ModelBundle
    output : path
        The ``.zip`` to write (atomically).
    test_image : ndarray, shape (Y, X) or (C, Y, X), optional
        Test input and cover image, at the model's object size, at least
        :func:`input_size_rule`'s minimum (230 x 230 at depth 4); a centred
        crop of at most 512 x 512 is kept.  Give a real image of the
        model's kind for the package a person will see (no image data ships
        with napari-unet); default: synthetic discs of the model's object size
        as the test input, and as the cover a real image of the model's kind
        where an installed package ships one for its bundled family
        (:data:`~napari_unet.core.models.bioimageio.covers.COVER_IMAGES`),
        else the synthetic test input.
    authors : list of str, optional
        Default: "napari-unet developers" for bundled models, the user's login name otherwise.
    license : str, optional
        SPDX identifier; default ``BSD-3-Clause`` (napari-unet's licence).

    Returns
    -------
    Path
        The written package.

    Raises
    ------
    BioimageioUnavailable
        If ``bioimageio.spec`` is not installed.
    ValueError
        If the test image does not fit the model, or the description does not validate.

    """
    v0_5 = _spec()
    output = Path(output)
    with spec_files_closed():
        _write_package(v0_5, bundle, output, test_image, authors, license)
    return output


@contextmanager
def spec_files_closed() -> Iterator[None]:
    """bioimageio.spec leaves files it read open until garbage collection: collect them, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            yield
        finally:
            gc.collect()


def _write_package(
    v0_5: Any,
    bundle: ModelBundle,
    output: Path,
    test_image: NDArray[Any] | None,
    authors: list[str] | None,
    license: str | None,
) -> None:
    from bioimageio.spec import save_bioimageio_package

    root = _bundled_root(bundle)
    chosen, origin = _choose_test_image(bundle, test_image)
    image = _test_input(bundle, chosen)
    outputs = network_outputs(bundle, image)
    real_cover = _choose_cover(root, test_image)
    cover = real_cover[0] if real_cover else None
    model_authors = _authors(v0_5, authors, bundle.name in BUNDLED_MODELS)
    with tempfile.TemporaryDirectory(prefix="napari-unet-export-") as folder:
        work = Path(folder)
        np.save(work / "test_input.npy", image[None])
        np.save(work / "test_output.npy", outputs[None])
        # the same tensors as TIFF: "sample tensors" that image viewers open
        tifffile.imwrite(work / "test_input.tif", image, photometric="minisblack")
        tifffile.imwrite(work / "test_output.tif", outputs, photometric="minisblack")
        if real_cover is not None:
            _real_cover(work / "cover.png", real_cover[1], bundle)
            (work / "cover.md").write_text(cover_documentation(real_cover[0]), encoding="utf-8")
        else:
            _cover(work / "cover.png", image, outputs, bundle)
        card = _model_card(bundle, root, origin, _cover_note(root, test_image, cover))
        (work / "README.md").write_text(card, encoding="utf-8")
        shutil.copyfile(
            Path(str(resources.files("napari_unet.core.models.bioimageio") / "architecture.py")),
            work / ARCHITECTURE_FILE,
        )
        torch.save({k: v.detach().cpu() for k, v in bundle.network.state_dict().items()}, work / "weights.pt")
        scripted = _torchscript(bundle, image, outputs)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit", DeprecationWarning)
            scripted.save(str(work / "weights_torchscript.pt"))
        input_tensor, output_tensor = _tensors(
            v0_5, bundle, work / "test_input.npy", work / "test_output.npy"
        )
        description = v0_5.ModelDescr(
            name=_safe_name(f"napari-unet {bundle.name}"),
            description=(
                f"2-D U-Net from napari-unet {__version__} ({bundle.name}): instance segmentation via "
                f"sigmoid heads {', '.join(bundle.config.heads)} and a seeded watershed. Objects about "
                f"{bundle.preprocess.object_diameter:g} px across. Weights hash {bundle.weights_hash()}."
            ),
            authors=model_authors,
            cite=_citations(v0_5, root),
            license=v0_5.LicenseId(license or DEFAULT_LICENSE),
            documentation=v0_5.FileDescr(source=work / "README.md"),
            covers=[v0_5.FileDescr(source=work / "cover.png")],
            # the cover image's source and terms, where it is a third party's
            attachments=[v0_5.FileDescr(source=work / "cover.md")] if cover else [],
            tags=[
                "napari-unet",
                "unet2d",
                "pytorch",
                "instance-segmentation",
                "2d",
                *([root] if root else []),
            ],
            inputs=[input_tensor],
            outputs=[output_tensor],
            parent=_parent(v0_5, bundle),
            training_data=_training_data(v0_5, bundle, root, model_authors, work),
            weights=v0_5.WeightsDescr(
                pytorch_state_dict=v0_5.PytorchStateDictWeightsDescr(
                    source=work / "weights.pt",
                    architecture=v0_5.ArchitectureFromFileDescr(
                        source=work / ARCHITECTURE_FILE,
                        callable=v0_5.Identifier(ARCHITECTURE_CALLABLE),
                        kwargs=to_dict(bundle.config),
                    ),
                    pytorch_version=v0_5.Version(_torch_version()),
                ),
                torchscript=v0_5.TorchscriptWeightsDescr(
                    source=work / "weights_torchscript.pt",
                    pytorch_version=v0_5.Version(_torch_version()),
                    parent="pytorch_state_dict",
                ),
            ),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(
                    # the spec's default absolute tolerance (1e-3) must stay under 1 % of the test
                    # output's largest value: a test image the model finds (almost) nothing in has
                    # probabilities far below 1 (half of 1 %: the spec rounds in float32)
                    reproducibility_tolerance=[
                        v0_5.ReproducibilityTolerance(
                            relative_tolerance=1e-3,
                            absolute_tolerance=min(1e-3, 0.005 * float(np.abs(outputs).max())),
                        )
                    ]
                ),
                napari_unet={
                    **model_header(bundle),
                    # local paths stay local
                    "provenance": _yaml_value(
                        {
                            k: v
                            for k, v in bundle.provenance.items()
                            if k not in ("parent_source", "imported_from")
                        }
                    ),
                },
            ),
        )
        # the library writes the zip and validates it; the only URLs (where a bundled model's
        # training data is published) are checked when reachable, and offline only logged
        package = save_bioimageio_package(description, output_path=work / "package.zip")
        with atomic_path(output) as tmp:
            shutil.copyfile(package, tmp)


def validate_package(path: str | os.PathLike[str]) -> Any:
    """Validate a package with ``bioimageio.spec``; returns the summary.

    Works offline: the training data's URL is then not checked (bioimageio.spec
    logs that it could not reach it).

    The returned ``ValidationSummary`` has ``status`` (``"valid-format"`` or
    ``"failed"``) and ``display()`` / ``format()`` for the details.
    """
    _spec()
    with spec_files_closed():
        return _validation_summary(Path(path))


def _validation_summary(path: Path) -> Any:
    from bioimageio.spec import load_description

    return load_description(path, perform_io_checks=True).validation_summary


__all__ = [
    "BioimageioUnavailable",
    "export_package",
    "input_size_rule",
    "network_outputs",
    "output_halo",
    "package_preprocessing",
    "scale_range",
    "spec_files_closed",
    "synthetic_test_image",
    "validate_package",
]
