"""Background jobs for the widget: thin ``thread_worker`` wrappers around core generators.

Each job is a generator run by :func:`napari.qt.threading.create_worker`: it
yields :class:`~napari_unet.core.progress.Progress` records (shown in the
GUI thread) and returns its result.  Quitting a worker stops its generator
between two records, so a cancelled job changes nothing.

Importing this module does not import torch: the docks open at once, and
:func:`preload_worker` imports torch and loads the model in the background
(started with :func:`start_loading`).
"""

from __future__ import annotations

import atexit
import functools
import gc
import importlib
import os
import sys
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from napari.qt.threading import FunctionWorker, GeneratorWorker, create_worker
from qtpy.QtCore import QThreadPool

from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model
from napari_unet.core.models.store import ModelVersion, save_version
from napari_unet.core.progress import Progress

if TYPE_CHECKING:
    from napari_unet.core.segmentation.segmenter import Segmentation, Segmenter
    from napari_unet.core.training.finetune import FineTuneJob


def limit_torch_threads() -> None:
    """Leave one core to napari's event loop: torch uses all but one (at least one)."""
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))


JOB_MODULES = (
    "torch._dynamo",  # and torch itself
    "napari_unet.core.batch.local",
    "napari_unet.core.segmentation.segmenter",
    "napari_unet.core.training.loop",
)
"""What segmenting, fine-tuning and batch runs import; :func:`preload` imports them in the background."""


def preload(models: ModelCache, model_path: str | None) -> ModelBundle | None:
    """Import :data:`JOB_MODULES`, then load the model in ``model_path``.

    torch takes seconds to import, and its optimisers import ``torch._dynamo``
    (~800 modules) on their first step, holding the GIL for up to ~120 ms at a
    time: done here, before the person's first Segment or Fine-tune, neither
    of them stalls on it (measured with benchmarks/open_widget.py and
    benchmarks/gui_responsiveness.py).  Returns ``None`` without a model or if
    it does not load (Segment then says why).

    Those imports also leave Python's garbage collector owing a full
    collection: CPython runs one once the objects promoted to its oldest
    generation since the last reach a quarter of those it kept.  With napari
    and torch in memory it takes ~250 ms, holding the GIL throughout, and the
    debt a load left could fall due in the first Segment (a stall of napari's
    event loop that long; ``benchmarks/gui_responsiveness.py --trace`` records
    the collections and the debt).  So the load that imports them runs it
    here, while loading; a later load (another model) does not.
    """
    first = any(name not in sys.modules for name in JOB_MODULES)
    for name in JOB_MODULES:
        importlib.import_module(name)
    bundle = _load(models, model_path)
    if first:
        gc.collect()
    return bundle


def _load(models: ModelCache, model_path: str | None) -> ModelBundle | None:
    if model_path is None:
        return None
    try:
        return models.get(model_path)
    except ValueError:
        return None


def preload_worker(models: ModelCache, model_path: str | None) -> FunctionWorker:
    """An unstarted worker running :func:`preload`; returns the model (or ``None``).

    Start it with :func:`start_loading`, not ``worker.start()``.
    """
    return create_worker(preload, models, model_path, _ignore_errors=True, _start_thread=False)


@functools.cache
def _loading_pool() -> QThreadPool:
    """The threads loads run in: one at a time, and Python waits for them before it exits."""
    pool = QThreadPool()
    pool.setMaxThreadCount(1)  # two docks (or two models chosen in a row) load one after the other
    atexit.register(pool.waitForDone)
    return pool


def start_loading(worker: FunctionWorker) -> None:
    """Start a :func:`preload_worker` in a thread pool of its own that Python waits for at exit.

    A load cannot stop half way (an import, a file read).  A dock closed
    while it runs ignores its result (and does not wait: closing stays
    instant), but a process that exited meanwhile would delete the worker's
    Qt signals under the running thread, and the thread's last signal would
    abort the process.  So the exit waits for the loads still running (a
    few seconds at most), and only for them, not for other plugins' workers.
    """
    _loading_pool().start(worker)


def _file_stamp(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size


class ModelCache:
    """Loaded models by file, so switching back and forth does not reload them.

    A file replaced since it was loaded (a model renamed, deleted and saved
    again under its name, by this window or another) is loaded afresh.
    """

    def __init__(self) -> None:
        self._bundles: dict[str, tuple[tuple[int, int] | None, ModelBundle]] = {}

    def get(self, path: str) -> ModelBundle:
        """The model in ``path``, loaded once (safe to call from a worker thread)."""
        stamp = _file_stamp(path)
        cached = self._bundles.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        bundle = load_model(path)
        self._bundles[path] = (stamp, bundle)
        return bundle

    def put(self, bundle: ModelBundle) -> None:
        """Remember a model that was just saved (by its ``source``)."""
        self._bundles[bundle.source] = (_file_stamp(bundle.source), bundle)


@dataclass
class SegmentRequest:
    """What a Segment click asks for.

    Attributes
    ----------
    model_path : str
    image : array-like
        The layer's full-resolution data (numpy, dask, zarr).
    axes : str
    planes : list of tuple, optional
        Stack positions to segment; all when ``None``.
    stitch : bool
    device : str
    postprocess : PostprocessConfig, optional
        Overrides the model's defaults.
    diameter : float, optional
        Object diameter in pixels; estimated from the image when ``None``.
    augment : bool
        Average the network outputs over flips (test-time augmentation).

    """

    model_path: str
    image: Any
    axes: str
    planes: list[tuple[int, ...]] | None
    stitch: bool
    device: str
    postprocess: PostprocessConfig | None = None
    diameter: float | None = None
    augment: bool = False


def segment_job(
    request: SegmentRequest, models: ModelCache
) -> Generator[Progress, None, tuple[Segmenter, Segmentation]]:
    """Load the model, segment, and return the segmenter with its result (outputs kept)."""
    from napari_unet.core.segmentation.segmenter import Segmenter

    yield Progress(0, 1000, "loading model")
    bundle = models.get(request.model_path)
    inference = InferenceConfig(device=request.device, diameter=request.diameter, augment=request.augment)
    segmenter = Segmenter(bundle, inference, request.postprocess)
    segmentation = yield from segmenter.segment(
        request.image, axes=request.axes, stitch=request.stitch, keep_outputs=True, planes=request.planes
    )
    return segmenter, segmentation


def segment_worker(request: SegmentRequest, models: ModelCache) -> GeneratorWorker:
    """An unstarted worker running :func:`segment_job`."""
    limit_torch_threads()
    # the widget reports failures itself (one clear message); napari's default would also
    # re-raise them in the GUI thread, where they show as an exception with a traceback
    return create_worker(segment_job, request, models, _ignore_errors=True)


def job_worker(job: Generator[Progress, None, Any]) -> GeneratorWorker:
    """An unstarted worker running ``job``, which is closed as soon as the worker ends.

    Quitting a worker leaves its generator suspended; closing it at once makes
    a cancelled job clean up (a temporary output file, tasks on a cluster)
    now, not whenever the generator is collected.
    """

    def work() -> Generator[Progress, None, Any]:
        return (yield from job)

    worker = create_worker(work, _ignore_errors=True)  # see segment_worker
    worker.finished.connect(job.close)
    return worker


def fine_tune_and_save(job: FineTuneJob) -> Generator[Progress, None, tuple[ModelBundle, ModelVersion]]:
    """Run ``job``, then save its model as a new version (in the worker: a save takes ~0.1 s)."""
    bundle = yield from job.run()
    return bundle, save_version(bundle)


def fine_tune_worker(job: FineTuneJob) -> GeneratorWorker:
    """An unstarted worker running a fine-tune job and saving its result."""
    limit_torch_threads()
    return create_worker(fine_tune_and_save, job, _ignore_errors=True)  # see segment_worker


def _save(bundle: ModelBundle) -> tuple[ModelBundle, ModelVersion]:
    return bundle, save_version(bundle)


def save_worker(bundle: ModelBundle) -> FunctionWorker:
    """An unstarted worker saving ``bundle`` as a new version; returns ``(bundle, version)``."""
    return create_worker(_save, bundle, _ignore_errors=True)  # see segment_worker


__all__ = [
    "JOB_MODULES",
    "ModelCache",
    "SegmentRequest",
    "fine_tune_and_save",
    "fine_tune_worker",
    "job_worker",
    "limit_torch_threads",
    "preload",
    "preload_worker",
    "save_worker",
    "segment_job",
    "segment_worker",
    "start_loading",
]
