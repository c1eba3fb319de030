"""Run a batch on a ``dask.distributed`` cluster: one task per file, or per chunk of planes.

The client plans each file on a worker (check, skip if complete, estimate the
object size), then segments it there in one task, or, for a stack with more
planes than ``planes_per_task``, in several chunk tasks whose per-plane labels
go to temporary chunk files that a last task numbers (and stitches) into the
output in plane order.  Planes are numbered by the same
:class:`~napari_unet.core.segmentation.postprocess.PlaneNumbering` as a local run, so the
labels are identical to a local run's.

Workers need the inputs, the output folder and the model file at the same
paths as the client (a shared file system); a bundled model is found in the
worker's own installation, and its weights must hash the same as the client's.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from napari_unet.core.batch.local import (
    BatchProgress,
    BatchSettings,
    FilePlan,
    FileResult,
    PlaneIndex,
    failure,
    middle_index,
    plan_file,
    write_overlay_of,
    write_plan,
)
from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.io.files import output_path
from napari_unet.core.io.stacks import LabelStackWriter, TiffImage, read_label_metadata
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run
from napari_unet.core.segmentation.axes import output_axes, output_shape
from napari_unet.core.segmentation.postprocess import PlaneNumbering
from napari_unet.core.segmentation.segmenter import Segmenter

if TYPE_CHECKING:
    from distributed import Client, Future

INSTALL_HINT = "pip install 'napari-unet[dask]'"


class ClusterError(RuntimeError):
    """The cluster cannot be used; the message says why and what to do."""


def require_distributed() -> None:
    """Raise :class:`ClusterError` with an install hint unless ``dask.distributed`` imports."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise ClusterError(f"running on a Dask cluster needs dask.distributed: {INSTALL_HINT}") from None


def connect(address: str, timeout: float = 20.0) -> Client:
    """A client of the scheduler at ``address`` (``tcp://host:port``) or in a scheduler file.

    Raises
    ------
    ClusterError
        If ``dask.distributed`` is missing or the scheduler cannot be reached.

    """
    require_distributed()
    from distributed import Client

    try:
        if Path(address).is_file():
            return Client(scheduler_file=address, timeout=timeout)
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {reason}") from None


@dataclass(frozen=True)
class ModelSpec:
    """What a worker needs to rebuild the client's segmenter.

    Attributes
    ----------
    path : str
        The model file as resolved on the client.
    name : str
        The name the user gave (resolved on a worker that lacks ``path``,
        e.g. a bundled model in another installation).
    weights_hash : str
        The worker's model must hash the same.
    inference : InferenceConfig
    postprocess : PostprocessConfig or None

    """

    path: str
    name: str
    weights_hash: str
    inference: InferenceConfig
    postprocess: PostprocessConfig | None = None

    @classmethod
    def of(
        cls,
        bundle: ModelBundle,
        name: str,
        inference: InferenceConfig,
        postprocess: PostprocessConfig | None = None,
    ) -> ModelSpec:
        """The spec of a model loaded on the client."""
        return cls(bundle.source, name, bundle.weights_hash(), inference, postprocess)


_SEGMENTERS: dict[ModelSpec, Segmenter] = {}
_SEGMENTERS_LOCK = threading.Lock()


def worker_segmenter(spec: ModelSpec) -> Segmenter:
    """The segmenter for ``spec`` in this process, loaded once and shared by its tasks.

    Raises
    ------
    ClusterError
        If this worker's model differs from the client's.

    """
    with _SEGMENTERS_LOCK:
        segmenter = _SEGMENTERS.get(spec)
        if segmenter is None:
            path = spec.path if spec.path and Path(spec.path).is_file() else resolve_model(spec.name)
            bundle = load_model(path)
            if bundle.weights_hash() != spec.weights_hash:
                raise ClusterError(
                    f"the model {path} on this worker differs from the client's "
                    f"(weights {bundle.weights_hash()}, expected {spec.weights_hash})"
                )
            segmenter = _SEGMENTERS[spec] = Segmenter(bundle, spec.inference, spec.postprocess)
        return segmenter


# -- tasks (run on workers) -----------------------------------------------------------------


def plan_task(path: Path, outdir: Path, spec: ModelSpec, settings: BatchSettings) -> FilePlan | FileResult:
    """:func:`~napari_unet.core.batch.local.plan_file` on a worker."""
    try:
        segmenter = worker_segmenter(spec)
    except Exception as error:
        return failure(path, output_path(path, outdir), error)
    return run(plan_file(path, outdir, segmenter, settings))


def whole_task(plan: FilePlan, spec: ModelSpec, settings: BatchSettings) -> FileResult:
    """:func:`~napari_unet.core.batch.local.write_plan` on a worker."""
    return run(write_plan(plan, worker_segmenter(spec), settings))


def chunk_folder(plan: FilePlan) -> Path:
    """Hidden folder beside the output holding its chunk files (removed when merged)."""
    return plan.output.with_name(f".{plan.output.name}.{plan.token}.chunks")


def chunk_task(plan: FilePlan, start: int, stop: int, spec: ModelSpec) -> Path | FileResult:
    """Segment planes ``start:stop`` into a chunk file of per-plane labels (each 1..N).

    A chunk file is written atomically; one left complete by an interrupted
    run of the same input is reused.
    """
    target = chunk_folder(plan) / f"{start:08d}-{stop:08d}.tif"
    if read_label_metadata(target) is not None:
        return target
    try:
        segmenter = worker_segmenter(spec)
        indices = plan.indices[start:stop]
        shape = (len(indices), *output_shape(plan.axes, plan.shape)[-2:])
        with TiffImage(plan.input) as image, LabelStackWriter(target, shape, "QYX") as writer:
            run(
                segmenter.predict_planes(
                    image,
                    plan.axes,
                    indices,
                    plan.diameter,
                    lambda _, outputs: writer.write(segmenter.labels(outputs)),
                )
            )
        return target
    except Exception as error:  # reported by the merge task, as the file's failure
        return failure(plan.input, plan.output, error)


def merge_task(plan: FilePlan, chunks: Sequence[Path | FileResult], settings: BatchSettings) -> FileResult:
    """Number (and stitch) the chunks' planes in order into the output, then remove the chunks."""
    try:
        for chunk in chunks:
            if isinstance(chunk, FileResult):
                return chunk
        indices = iter(plan.indices)
        numbering = PlaneNumbering(settings.stitch)
        wanted = middle_index(plan.axes, plan.shape)
        middle = None
        shape = output_shape(plan.axes, plan.shape)
        with LabelStackWriter(
            plan.output, shape, output_axes(plan.axes), plan.metadata, plan.pixel_size
        ) as writer:
            for chunk in chunks:
                assert isinstance(chunk, Path)
                with tifffile.TiffFile(chunk) as tiff:
                    for page in tiff.pages:
                        index: PlaneIndex = next(indices)
                        # int32 first: numbering adds offsets that would overflow uint16
                        numbered = numbering.add(index, np.asarray(page.asarray(), np.int32))
                        writer.write(numbered)
                        if index == wanted:
                            middle = numbered
            if settings.overlay and middle is not None:
                with TiffImage(plan.input) as image:
                    write_overlay_of(plan, image, middle)
            writer.metadata["seconds"] = round(time.time() - plan.started, 3)
        seconds = time.time() - plan.started
        return FileResult(plan.input, plan.output, "done", writer.objects, seconds, notices=plan.notices)
    except Exception as error:
        return failure(plan.input, plan.output, error)
    finally:
        shutil.rmtree(chunk_folder(plan), ignore_errors=True)


# -- the client -----------------------------------------------------------------------------


def segment_files_on_cluster(
    inputs: Sequence[Path],
    outdir: Path,
    spec: ModelSpec,
    client: Client,
    settings: BatchSettings | None = None,
    planes_per_task: int = 8,
) -> Generator[BatchProgress, None, list[FileResult]]:
    """Segment files on the cluster behind ``client``; records as :func:`~napari_unet.core.batch.local.segment_files`.

    Parameters
    ----------
    inputs : sequence of Path
    outdir : Path
    spec : ModelSpec
    client : distributed.Client
    settings : BatchSettings, optional
    planes_per_task : int
        Stacks with more planes are split into tasks of this many planes
        (0: one task per file).

    Yields
    ------
    BatchProgress
        ``step`` counts finished files; one record per file carries its
        :class:`~napari_unet.core.batch.local.FileResult` in ``finished``.
        Closing the generator cancels the tasks not yet started (running ones
        finish their file or chunk, which is written completely or not at all).

    Returns
    -------
    list of FileResult
        In the order of ``inputs``.

    """
    from distributed import as_completed

    settings = settings or BatchSettings()
    outdir = Path(outdir).resolve()  # workers may run in another folder
    inputs = [Path(path).resolve() for path in inputs]
    total = len(inputs)
    roles: dict[Future, tuple[str, Path]] = {}
    chunks_left: dict[Path, list[int]] = {}
    pending = as_completed()

    def submit(role: str, path: Path, function: Any, *args: Any) -> Future:
        future = client.submit(function, *args, pure=False)
        roles[future] = (role, path)
        pending.add(future)
        return future

    for path in inputs:
        submit("plan", path, plan_task, path, outdir, spec, settings)
    ended = 0  # files done, skipped or failed
    outcomes: dict[Path, FileResult] = {}
    try:
        for future in pending:
            role, path = roles[future]
            try:
                value = future.result()
            except Exception as error:  # a worker died or the task could not run
                value = failure(path, output_path(path, outdir), error)
            if role == "chunk":
                left = chunks_left[path]
                left[0] -= 1
                share = 1 - left[0] / left[1]
                yield BatchProgress(ended, total, f"{path.name}: chunk done", {"file": share}, input=path)
            elif role == "plan" and isinstance(value, FilePlan):
                planes = len(value.indices)
                if planes_per_task <= 0 or planes <= planes_per_task or not value.streams:
                    submit("file", path, whole_task, value, spec, settings)
                    message = f"{path.name}: planned, 1 task"
                    yield BatchProgress(ended, total, message, {"file": 0.0}, input=path)
                    continue
                starts = range(0, planes, planes_per_task)
                chunks_left[path] = [len(starts), len(starts)]
                chunks = [
                    submit("chunk", path, chunk_task, value, s, min(s + planes_per_task, planes), spec)
                    for s in starts
                ]
                submit("file", path, merge_task, value, chunks, settings)
                message = f"{path.name}: planned, {len(chunks)} chunks"
                yield BatchProgress(ended, total, message, {"file": 0.0}, input=path)
            else:
                ended += 1
                assert isinstance(value, FileResult)
                outcomes[path] = value
                message = f"{path.name}: {value.status}"
                yield BatchProgress(ended, total, message, {"file": 0.0}, input=path, finished=value)
    finally:
        left = [f for f in roles if not f.done()]
        if left:
            client.cancel(left)
    return [outcomes[path] for path in inputs]
