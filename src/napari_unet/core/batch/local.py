"""Files -> labels on disk: the job behind ``napari-unet segment``, the batch widget and Dask.

Stacks stream: planes are read one at a time (:class:`~napari_unet.core.io.stacks.TiffImage`),
segmented, numbered (and stitched, keeping only the previous plane) and
written as they come (:class:`~napari_unet.core.io.stacks.LabelStackWriter`),
so memory does not grow with the number of planes.  Each output is written
under a temporary name and renamed when complete; a re-run skips complete
outputs and removes the temporary files of writers that died (resume).  A bad
input is reported with one line naming the file and the reason; the other
inputs are still processed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from napari_unet.core.io.atomic import remove_stale_parts
from napari_unet.core.io.files import InputError, output_path, write_overlay
from napari_unet.core.io.provenance import ProvenanceDetail, labels_provenance
from napari_unet.core.io.stacks import LabelStackWriter, PixelSize, TiffImage, read_label_metadata
from napari_unet.core.progress import Progress, relay
from napari_unet.core.segmentation.axes import (
    normalise_axes,
    output_axes,
    output_shape,
    plane_indices,
    plane_selector,
    read_plane,
    stack_axes,
)
from napari_unet.core.segmentation.domain import blank_notice
from napari_unet.core.segmentation.postprocess import PlaneNumbering, PlaneOutputs
from napari_unet.core.segmentation.segmenter import Segmenter

Status = Literal["done", "skipped", "failed"]
PlaneIndex = tuple[int, ...]


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file.

    ``notices`` are one line each about the image against the model, e.g. that
    it is blank (see :mod:`~napari_unet.core.segmentation.domain`).
    """

    input: Path
    output: Path
    status: Status
    objects: int = 0
    seconds: float = 0.0
    error: str = ""
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class BatchProgress(Progress):
    """A batch's progress: ``step`` counts finished files.

    Attributes
    ----------
    input : Path or None
        The input file the record is about (``None`` before the files start).
    finished : FileResult or None
        Set on the record of the file that just ended (done, skipped or failed).

    Notes
    -----
    ``metrics["file"]`` is the share done of the file in progress, so
    ``(step + metrics["file"]) / total`` is the whole batch's share.

    """

    input: Path | None = None
    finished: FileResult | None = None


@dataclass(frozen=True)
class BatchSettings:
    """Everything besides the model that decides a batch's outputs.

    Attributes
    ----------
    axes : str, optional
        Axes of every input; by default each file's own metadata (or a guess).
    stitch : bool
        Join objects across consecutive planes of stacks.
    overwrite : bool
        Redo outputs that already exist.
    overlay : bool
        Also write ``<stem>_overlay.png`` (middle plane, object outlines).
    provenance : {"minimal", "full"}
        What the outputs record about their inputs: file names and content
        hashes, or also absolute paths and the host name (see
        :func:`~napari_unet.core.io.provenance.labels_provenance`).

    """

    axes: str | None = None
    stitch: bool = False
    overwrite: bool = False
    overlay: bool = False
    provenance: ProvenanceDetail = "minimal"


# -- one file -------------------------------------------------------------------------------


def skip_result(path: Path, outdir: Path, settings: BatchSettings) -> FileResult | None:
    """A "skipped" result if ``path``'s output is already complete (and not to be redone).

    Also removes temporary files that dead writers of that output left behind.
    """
    target = output_path(path, outdir)
    remove_stale_parts(target)
    remove_stale_parts(overlay_path(target))
    if settings.overwrite or read_label_metadata(target) is None:
        return None
    return FileResult(path, target, "skipped")


def overlay_path(target: Path) -> Path:
    """``<stem>_overlay.png`` beside a label file."""
    return target.with_name(f"{target.stem}_overlay.png")


def failure(path: Path, target: Path, error: BaseException) -> FileResult:
    """A "failed" result with a one-line message that names the file."""
    if isinstance(error, InputError | ValueError | OSError | MemoryError):
        message = str(error) if str(path) in str(error) else f"{path}: {error}"
    else:
        message = f"{path}: unexpected {type(error).__name__}: {error}"
    return FileResult(path, target, "failed", error=message.splitlines()[0] if message else str(path))


@dataclass(frozen=True)
class FilePlan:
    """An input checked and measured, ready to be segmented (possibly elsewhere).

    Attributes
    ----------
    input, output : Path
    axes : str
        Normalised axes of the input.
    shape : tuple of int
        Shape of the input.
    diameter : float or None
        Object diameter every plane is segmented at.
    metadata : dict
        Provenance for the output.
    pixel_size : PixelSize or None
    started : float
        When planning began (seconds since the epoch).
    notices : tuple of str
        Hints about the image against the model (see ``Segmenter.image_notices``).

    """

    input: Path
    output: Path
    axes: str
    shape: tuple[int, ...]
    diameter: float | None
    metadata: dict[str, Any]
    pixel_size: PixelSize | None
    started: float = 0.0
    notices: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        """Identifies what the planes' labels depend on: input, model, parameters, axes, diameter."""
        keys = ("input_sha256", "model_hash", "inference", "postprocess", "input_axes", "diameter")
        text = json.dumps({key: self.metadata.get(key) for key in keys}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def indices(self) -> list[PlaneIndex]:
        """Stack positions of all planes, in the order they are written."""
        return list(plane_indices(self.axes, self.shape))

    @property
    def streams(self) -> bool:
        """Whether planes can go to disk as they come (Y and X are the label image's last axes)."""
        return output_axes(self.axes).endswith("YX")


def plan_file(
    path: Path, outdir: Path, segmenter: Segmenter, settings: BatchSettings
) -> Generator[Progress, None, FilePlan | FileResult]:
    """Check an input and estimate its object size; a :class:`FileResult` if there is nothing to do.

    Returns a "skipped" result for a complete output (unless overwriting) and
    a "failed" one, naming the file and the reason, for a bad input.
    """
    started = time.time()
    target = output_path(path, outdir)
    if target.resolve() == path.resolve():
        return FileResult(
            path, target, "failed", error=f"{path}: the output would replace it; choose another folder"
        )
    skipped = skip_result(path, outdir, settings)
    if skipped is not None:
        return skipped
    try:
        with TiffImage(path) as image:
            axes = normalise_axes(settings.axes or image.axes, image.shape)
            yield Progress(0, 1000, "estimating object size")
            indices = list(plane_indices(axes, tuple(image.shape)))
            diameter, hints = segmenter.size_and_notices(image, axes, indices)
            notices = tuple(hints)
            metadata = labels_provenance(
                segmenter.bundle,
                segmenter.inference,
                segmenter.postprocess,
                str(segmenter.device),
                path,
                axes,
                settings.stitch,
                diameter,
                settings.provenance,
            )
            return FilePlan(
                path,
                target,
                axes,
                tuple(image.shape),
                diameter,
                metadata,
                image.pixel_size,
                started,
                notices,
            )
    except Exception as error:  # one bad file must never stop the batch
        return failure(path, target, error)


def write_plan(
    plan: FilePlan, segmenter: Segmenter, settings: BatchSettings
) -> Generator[Progress, None, FileResult]:
    """Segment a planned input into its output, streaming plane by plane.

    Yields
    ------
    Progress
        ``step`` out of 1000.

    Returns
    -------
    FileResult
        ``failed`` results carry the reason; no exception escapes for a bad file.

    """
    try:
        with TiffImage(plan.input) as image:
            writer = LabelStackWriter(
                plan.output,
                output_shape(plan.axes, plan.shape),
                output_axes(plan.axes),
                plan.metadata,
                plan.pixel_size,
            )
            with writer:
                middle, blank = yield from _stream(segmenter, image, plan, settings.stitch, writer)
                if settings.overlay:  # before the labels' rename: a complete output has its overlay
                    write_overlay_of(plan, image, middle)
                writer.metadata["seconds"] = round(time.time() - plan.started, 3)
        notice = blank_notice(blank, len(plan.indices))
        return FileResult(
            plan.input,
            plan.output,
            "done",
            writer.objects,
            time.time() - plan.started,
            notices=(notice, *plan.notices) if notice else plan.notices,
        )
    except Exception as error:  # one bad file must never stop the batch
        return failure(plan.input, plan.output, error)


def segment_file(
    path: Path, outdir: Path, segmenter: Segmenter, settings: BatchSettings
) -> Generator[Progress, None, FileResult]:
    """Segment one TIFF into ``outdir/<stem>.tif``: :func:`plan_file`, then :func:`write_plan`."""
    plan = yield from plan_file(path, outdir, segmenter, settings)
    if isinstance(plan, FileResult):
        return plan
    return (yield from write_plan(plan, segmenter, settings))


def write_overlay_of(plan: FilePlan, image: Any, middle: NDArray[np.integer]) -> None:
    """Write ``<stem>_overlay.png``: the middle plane with the outlines of its labels."""
    index = middle_index(plan.axes, plan.shape)
    write_overlay(overlay_path(plan.output), read_plane(image, plan.axes, index), middle)


def middle_index(axes: str, shape: tuple[int, ...]) -> PlaneIndex:
    """Stack position of the middle plane (the one an overlay shows)."""
    return tuple(n // 2 for a, n in zip(axes, shape, strict=True) if a in stack_axes(axes))


def _stream(
    segmenter: Segmenter, image: Any, plan: FilePlan, stitch: bool, writer: LabelStackWriter
) -> Generator[Progress, None, tuple[NDArray[np.int32], int]]:
    """Segment every plane into ``writer``.

    Returns the middle plane's labels (for the overlay) and how many planes were blank.
    """
    numbering = PlaneNumbering(stitch)
    middle: list[NDArray[np.int32]] = []
    wanted = middle_index(plan.axes, plan.shape)
    labels_axes = output_axes(plan.axes)
    whole = None if plan.streams else np.zeros(output_shape(plan.axes, plan.shape), np.int32)

    blank: list[PlaneIndex] = []

    def sink(index: PlaneIndex, outputs: PlaneOutputs) -> None:
        if outputs.blank:
            blank.append(index)
        numbered = numbering.add(index, segmenter.labels(outputs))
        if index == wanted:
            middle.append(numbered)
        if whole is None:
            writer.write(numbered)
        else:
            whole[plane_selector(labels_axes, index)] = numbered

    yield from segmenter.predict_planes(image, plan.axes, plan.indices, plan.diameter, sink)
    if whole is not None:  # rare layouts (e.g. YXZ): pages are planes of the last two axes
        for plane in whole.reshape(-1, *whole.shape[-2:]):
            writer.write(plane)
    return middle[0], len(blank)


def segment_files(
    inputs: Sequence[Path],
    outdir: Path,
    segmenter: Segmenter,
    settings: BatchSettings | None = None,
) -> Generator[BatchProgress, None, list[FileResult]]:
    """Segment each input file into ``outdir/<stem>.tif``, one after another.

    Parameters
    ----------
    inputs : sequence of Path
        TIFF files.
    outdir : Path
        Output folder (created if needed).
    segmenter : Segmenter
        Model, device and parameters.
    settings : BatchSettings, optional

    Yields
    ------
    BatchProgress
        One record per file carries that file's :class:`FileResult` in
        ``finished``.  Closing the generator stops between two tile batches
        and leaves no partial output.

    Returns
    -------
    list of FileResult
        In the order of ``inputs``.

    """
    settings = settings or BatchSettings()
    total = len(inputs)
    outcomes = []
    for number, path in enumerate(inputs):

        def of_batch(record: Progress, number: int = number, path: Path = Path(path)) -> BatchProgress:
            message = f"{path.name}: {record.message}"
            return BatchProgress(number, total, message, {"file": record.fraction}, input=path)

        outcome = yield from relay(segment_file(Path(path), Path(outdir), segmenter, settings), of_batch)
        message = f"{Path(path).name}: {outcome.status}"
        if outcome.status == "skipped":
            message = f"{Path(path).name}: already done, skipped"
        outcomes.append(outcome)
        yield BatchProgress(number + 1, total, message, {"file": 0.0}, input=Path(path), finished=outcome)
    return outcomes
