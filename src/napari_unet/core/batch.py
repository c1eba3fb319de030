"""Files -> labels on disk: the job behind ``napari-unet segment`` and the batch widget.

Each output is written atomically, so an interrupted run leaves only complete
files under final names, and a re-run skips them (resume).  A bad input is
reported with one line naming the file and the reason; the other inputs are
still processed.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

from napari_unet import __version__
from napari_unet.core.axes import normalise_axes, output_axes, plane_order, plane_selector, stack_axes
from napari_unet.core.config import to_dict
from napari_unet.core.inference import Segmentation, Segmenter
from napari_unet.core.io import InputError, output_path, read_image_with_axes, write_labels, write_overlay
from napari_unet.core.progress import Progress

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class FileResult:
    """What happened to one input file."""

    input: Path
    output: Path
    status: Status
    objects: int = 0
    seconds: float = 0.0
    error: str = ""


def _provenance(segmenter: Segmenter, path: Path, result: Segmentation) -> dict[str, Any]:
    bundle = segmenter.bundle
    return {
        "software": f"napari-unet {__version__}",
        "model": bundle.name,
        "model_source": bundle.source,
        "model_hash": bundle.weights_hash(),
        "inference": to_dict(segmenter.inference),
        "postprocess": to_dict(segmenter.postprocess),
        "device": result.device,
        "diameter": result.diameter,
        "input": str(path.resolve()),
        "axes": output_axes(result.axes),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def segment_files(
    inputs: Sequence[Path],
    outdir: Path,
    segmenter: Segmenter,
    axes: str | None = None,
    overwrite: bool = False,
    overlay: bool = False,
    stitch: bool = False,
) -> Generator[Progress, None, None]:
    """Segment each input file into ``outdir/<stem>.tif``.

    Parameters
    ----------
    inputs : sequence of Path
        TIFF files.
    outdir : Path
        Output folder (created if needed).
    segmenter : Segmenter
        Model, device and parameters.
    axes : str, optional
        Axes of every input; by default each file's own metadata (or a guess).
    overwrite : bool
        Redo outputs that already exist.
    overlay : bool
        Also write ``<stem>_overlay.png`` (middle plane, object outlines).
    stitch : bool
        Join objects across consecutive planes of stacks.

    Yields
    ------
    Progress
        ``step`` counts files (fractional progress within a file is in the
        message); one record per file carries that file's :class:`FileResult`
        in ``result``.

    """
    total = len(inputs)
    for number, path in enumerate(inputs):
        target = output_path(path, outdir)
        if target.exists() and not overwrite:
            yield Progress(
                number + 1, total, f"{path.name}: exists, skipped", result=FileResult(path, target, "skipped")
            )
            continue
        started = time.perf_counter()
        try:
            image, file_axes = read_image_with_axes(path)
            image_axes = normalise_axes(axes or file_axes, image.shape)
            result: Segmentation | None = None
            for record in segmenter.segment(image, axes=image_axes, stitch=stitch):
                result = record.result or result
                yield Progress(number, total, f"{path.name}: {record.message} ({record.fraction:.0%})")
            assert result is not None
            write_labels(target, result.labels, metadata=_provenance(segmenter, path, result))
            if overlay:
                _write_overlay(target, image, image_axes, result)
            objects = len(np.unique(result.labels)) - 1
            outcome = FileResult(path, target, "done", objects, time.perf_counter() - started)
        except (InputError, ValueError, OSError, MemoryError) as error:
            message = str(error) if str(path) in str(error) else f"{path}: {error}"
            outcome = FileResult(
                path, target, "failed", error=message.splitlines()[0] if message else str(path)
            )
        except Exception as error:  # one bad file must never stop the batch
            message = f"{path}: unexpected {type(error).__name__}: {error}"
            outcome = FileResult(
                path, target, "failed", error=message.splitlines()[0] if message else str(path)
            )
        yield Progress(number + 1, total, f"{path.name}: {outcome.status}", result=outcome)


def _write_overlay(target: Path, image: Any, axes: str, result: Segmentation) -> None:
    """Write the middle plane of ``image`` with object outlines beside ``target``."""
    index = tuple(n // 2 for a, n in zip(axes, image.shape, strict=True) if a in stack_axes(axes))
    plane = np.asarray(image[plane_selector(axes, index)]).transpose(plane_order(axes))
    labels = result.labels[plane_selector(output_axes(axes), index)]
    write_overlay(target.with_name(f"{target.stem}_overlay.png"), plane, labels)
