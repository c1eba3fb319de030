"""The one entry point of a batch: segment files here or on a Dask cluster.

``napari-unet segment`` and the batch widget both call :func:`segment_batch`;
whether the files run in this process
(:func:`~napari_unet.core.batch.local.segment_files`) or on the workers of a
``dask.distributed`` scheduler
(:func:`~napari_unet.core.batch.cluster.segment_files_on_cluster`) is decided
here, by ``scheduler`` alone.  Both give the same outputs and the same records.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path

from napari_unet.core.batch import cluster
from napari_unet.core.batch.cluster import ClusterError
from napari_unet.core.batch.local import BatchProgress, BatchSettings, FileResult, segment_files
from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.segmentation.segmenter import Segmenter


@dataclass(frozen=True)
class BatchStart(BatchProgress):
    """The record of a batch that is ready to start: ``message`` says which model runs where.

    Attributes
    ----------
    where : str
        The device (``cpu``, ``cuda:0``, ...) or ``the Dask cluster at ADDRESS``.

    """

    where: str = ""


def segment_batch(
    inputs: Sequence[Path],
    outdir: Path,
    bundle: ModelBundle,
    model: str,
    inference: InferenceConfig,
    postprocess: PostprocessConfig | None = None,
    settings: BatchSettings | None = None,
    scheduler: str | None = None,
    planes_per_task: int = 8,
) -> Generator[BatchProgress, None, list[FileResult]]:
    """Segment each input file into ``outdir/<stem>.tif``, here or on a Dask cluster.

    Parameters
    ----------
    inputs : sequence of Path
        TIFF files.
    outdir : Path
        Output folder.
    bundle : ModelBundle
        The model, loaded here.
    model : str
        The model's name or file as the user gave it: a worker resolves it
        when it cannot read ``bundle``'s file (see
        :class:`~napari_unet.core.batch.cluster.ModelSpec`).
    inference : InferenceConfig
    postprocess : PostprocessConfig, optional
        Defaults to the model's.
    settings : BatchSettings, optional
    scheduler : str, optional
        A Dask scheduler's address (``tcp://host:8786``) or scheduler file;
        ``None`` or empty to run in this process.
    planes_per_task : int
        On a cluster, stacks with more planes are split into tasks of this
        many planes (0: one task per file).

    Yields
    ------
    BatchProgress
        First a :class:`BatchStart` once the model is placed (or the cluster
        reached), then the records of
        :func:`~napari_unet.core.batch.local.segment_files`.  Closing the
        generator stops the batch (and cancels the cluster's tasks not yet
        started); finished outputs stay, the file in progress leaves nothing.

    Returns
    -------
    list of FileResult
        In the order of ``inputs``.

    Raises
    ------
    ClusterError
        If ``dask.distributed`` is missing or the scheduler cannot be reached.

    """
    total = len(inputs)
    if not scheduler:
        segmenter = Segmenter(bundle, inference, postprocess)
        where = str(segmenter.device)
        yield BatchStart(
            0, total, f"model {bundle.name} on {where}; {total} input(s)", {"file": 0.0}, where=where
        )
        return (yield from segment_files(inputs, outdir, segmenter, settings))
    yield BatchProgress(0, total, f"connecting to {scheduler}", {"file": 0.0})
    client = cluster.connect(scheduler)
    try:
        where = f"the Dask cluster at {scheduler}"
        workers = len(client.scheduler_info().get("workers", {}))
        message = f"model {bundle.name} on {where} ({workers} workers now); {total} input(s)"
        yield BatchStart(0, total, message, {"file": 0.0}, where=where)
        spec = cluster.ModelSpec.of(bundle, model, inference, postprocess)
        return (
            yield from cluster.segment_files_on_cluster(
                inputs, outdir, spec, client, settings, planes_per_task
            )
        )
    finally:
        client.close()


__all__ = ["BatchStart", "ClusterError", "segment_batch"]
