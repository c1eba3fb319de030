"""Record a person's corrections on a result layer and save them as they are made."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import napari
import numpy as np
from numpy.typing import NDArray
from qtpy.QtCore import QObject, QTimer, Signal, Slot

from napari_unet.core.segmentation.axes import read_plane
from napari_unet.core.training.corrections import (
    Correction,
    CorrectionSet,
    CorrectionStore,
    corrected_region,
    image_fingerprint,
    image_key,
    keep_corrections,
)
from napari_unet.gui.layers import (
    EditTracker,
    Plane,
    ensure_labels_layer,
    image_data,
    int32_labels,
    labels_plane_selector,
    replace_labels,
)

SAVE_DELAY_MS = 300
"""Edits are written this long after the last stroke (strokes in a burst are written once)."""


class _Relay(QObject):
    """Calls a function in the GUI thread when :attr:`written` is emitted from any thread."""

    written = Signal()

    def __init__(self) -> None:
        # no Qt parent: it lives as long as the recorder, so a write that ends after the widget
        # closed still finds it; it belongs to the GUI thread, so an emit from the writer is queued
        super().__init__()
        self.callback: Callable[[], None] = lambda: None
        self.written.connect(self._deliver)

    @Slot()
    def _deliver(self) -> None:
        self.callback()


class CorrectionRecorder:
    """Tracks edits on one image's result layer and writes each edited plane to the store.

    What a person edited stays theirs: a re-segmentation shows the new
    prediction only outside the corrected regions (:meth:`keep_corrections`),
    and a result layer's edits are remembered while another image is shown.

    Parameters
    ----------
    corrections : CorrectionSet
        The session's corrections (what Fine-tune trains on).
    parent : QObject, optional
        Owner of the save timer (the widget), so that it stops with it.
    on_written : callable, optional
        Called in the GUI thread after each correction file is written (or
        failed to be: see :attr:`write_error`).

    Attributes
    ----------
    write_error : BaseException or None
        The last failed write's error.

    """

    def __init__(
        self,
        corrections: CorrectionSet,
        parent: QObject | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self.corrections = corrections
        self.image_layer: napari.layers.Image | None = None
        self.axes = ""
        self.key = ""
        self.tracker: EditTracker | None = None
        self._fully_reviewed: set[Plane] = set()
        # edits of result layers not tracked now (another image is shown), by id of the layer
        self._earlier: dict[int, tuple[weakref.ref[Any], NDArray[np.bool_], set[Plane]]] = {}
        self._generation: dict[tuple[str, Plane], int] = {}
        self._dirty: set[Plane] = set()
        # one writer thread: files are written in the order edits were made, off the GUI thread
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-corrections")
        self._pending: list[Future[Any]] = []
        self.write_error: BaseException | None = None
        self._relay = _Relay()
        if on_written is not None:
            self._relay.callback = on_written
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(SAVE_DELAY_MS)
        self._timer.timeout.connect(self.flush)

    @property
    def store(self) -> CorrectionStore:
        """Where corrections are written."""
        return self.corrections.store

    def set_image(self, image_layer: napari.layers.Image | None, axes: str) -> None:
        """Follow another image (its result layer, if it has one, is tracked from now on)."""
        if image_layer is self.image_layer and axes == self.axes:
            return
        self.flush(wait=True)
        self.detach()
        self.image_layer, self.axes = image_layer, axes
        self.key = ""
        if image_layer is not None:
            self.key = image_key(image_layer.name, image_fingerprint(image_data(image_layer)))

    def attach(self, labels_layer: napari.layers.Labels) -> None:
        """Track edits on ``labels_layer`` (the current image's result layer)."""
        if self.tracker is not None and self.tracker.layer is labels_layer:
            if self.tracker.edited.shape == labels_layer.data.shape:
                return
        self.detach()
        self.tracker = EditTracker(labels_layer, self.axes, self._on_edit)
        reference, edited, reviewed = self._earlier.pop(id(labels_layer), (None, None, set()))
        if reference is not None and reference() is labels_layer and edited.shape == labels_layer.data.shape:
            self.tracker.edited, self._fully_reviewed = edited, reviewed

    def detach(self) -> None:
        """Stop tracking the result layer (its edits are remembered should it be tracked again)."""
        self._earlier = {k: v for k, v in self._earlier.items() if v[0]() is not None}
        if self.tracker is not None:
            self.tracker.disconnect()
            if self.tracker.edited.any() or self._fully_reviewed:
                layer = self.tracker.layer
                self._earlier[id(layer)] = (
                    weakref.ref(layer),
                    self.tracker.edited,
                    set(self._fully_reviewed),
                )
            self.tracker = None
        self._fully_reviewed = set()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Within, changes to the tracked layer are the plugin's, not edits."""
        if self.tracker is None:
            yield
            return
        with self.tracker.paused():
            yield

    def edited_planes(self) -> set[Plane]:
        """Planes of the current result layer with edits."""
        return self.tracker.edited_planes() if self.tracker is not None else set()

    def corrected_planes(self) -> set[Plane]:
        """Planes of the current result layer with edits or marked fully reviewed."""
        return self.edited_planes() | self._fully_reviewed if self.tracker is not None else set()

    def _on_edit(self, planes: set[Plane]) -> None:
        self._dirty |= planes
        self._timer.start()

    def mark_reviewed(self, plane: Plane) -> None:
        """Say the person checked every pixel of ``plane``: all of it trains."""
        if self.tracker is None:
            return
        self._fully_reviewed.add(plane)
        self._dirty.add(plane)
        self.flush(wait=True)

    def flush(self, wait: bool = False) -> None:
        """Save every plane edited since the last save (now, not after the delay).

        The planes are copied here and written by a background thread.

        Parameters
        ----------
        wait : bool
            Return only once everything is on disk and in the session's corrections.

        Raises
        ------
        OSError
            With ``wait``, if a write failed (also kept in :attr:`write_error`).

        """
        self._timer.stop()
        dirty, self._dirty = self._dirty, set()
        if self.tracker is not None and self.image_layer is not None:
            self._save(dirty)
        if wait:
            pending, self._pending = self._pending, []
            for future in pending:
                future.result()

    def _on_written(self, future: Future[Any]) -> None:  # in the writer thread
        if future.exception() is not None:
            self.write_error = future.exception()
        self._relay.written.emit()

    def _save(self, planes: set[Plane]) -> None:
        assert self.tracker is not None and self.image_layer is not None
        self._pending = [f for f in self._pending if not f.done()]
        labels = self.tracker.layer.data
        for plane in sorted(planes):
            generation = self._generation.get((self.key, plane))
            if generation is None:
                generation = self.store.next_generation(self.key, plane)
                self._generation[(self.key, plane)] = generation
            correction = Correction(
                key=self.key,
                plane=plane,
                image=read_plane(image_data(self.image_layer), self.axes, plane),
                labels=int32_labels(labels[labels_plane_selector(self.axes, plane)]),
                edited=self.tracker.plane(plane).copy(),
                fully_reviewed=plane in self._fully_reviewed,
                generation=generation,
                meta=self._meta(),
            )
            future = self._writer.submit(self.corrections.update, correction)
            future.add_done_callback(self._on_written)
            self._pending.append(future)

    def _meta(self) -> dict[str, Any]:
        assert self.image_layer is not None
        source = getattr(self.image_layer.source, "path", None)
        return {"image": self.image_layer.name, "source": str(source or ""), "axes": self.axes}

    def corrected_region(self, plane: Plane) -> NDArray[np.bool_] | None:
        """Pixels of ``plane`` the person set (``None`` if none), shape (Y, X).

        See :func:`~napari_unet.core.training.corrections.corrected_region`.
        """
        if self.tracker is None:
            return None
        edited = self.tracker.plane(plane)
        reviewed = plane in self._fully_reviewed
        if not reviewed and not edited.any():
            return None
        drawn = np.asarray(self.tracker.layer.data[labels_plane_selector(self.axes, plane)])
        return corrected_region(drawn, edited, reviewed)

    def keep_corrections(
        self, planes: Sequence[Plane], labels: Sequence[NDArray[np.integer[Any]]]
    ) -> list[NDArray[np.integer[Any]]]:
        """New labels of ``planes`` with what the person drew kept in the corrected regions.

        Parameters
        ----------
        planes : sequence of tuple of int
            Stack positions, as on the tracked result layer.
        labels : sequence of ndarray of int, shape (Y, X)
            Each plane's new labels (a prediction).

        Returns
        -------
        list of ndarray of int, shape (Y, X)
            ``labels`` with the corrected regions as they are on the layer
            (see :func:`~napari_unet.core.training.corrections.keep_corrections`).

        """
        regions = {i: self.corrected_region(plane) for i, plane in enumerate(planes)}
        corrected = [i for i, region in regions.items() if region is not None]
        if not corrected or self.tracker is None:
            return list(labels)
        data = self.tracker.layer.data
        merged = keep_corrections(
            np.stack([labels[i] for i in corrected]),
            np.stack([np.asarray(data[labels_plane_selector(self.axes, planes[i])]) for i in corrected]),
            np.stack([regions[i] for i in corrected]),
            next_id=max(int(np.max(plane_labels, initial=0)) for plane_labels in labels) + 1,
        )
        result = list(labels)
        for position, i in enumerate(corrected):
            result[i] = merged[position]
        return result

    def segmented(self, planes: set[Plane]) -> None:
        """``planes`` were segmented afresh: saved corrections stay, later edits go to a new file.

        The edits stay tracked (what was drawn stays on screen); a later edit of
        one of these planes is saved as its next generation, so the saved one
        keeps the labels around the edits as the person saw them.
        """
        self.flush(wait=True)
        for plane in planes:
            self._generation.pop((self.key, plane), None)

    def saved_count(self) -> int:
        """Planes of the current image with corrections on disk (under any name)."""
        if not self.key:
            return 0
        fingerprint = self.key.rsplit("-", 1)[-1]
        return sum(self.store.plane_count(k) for k in self.store.find(fingerprint))

    def restore(self, viewer: napari.Viewer) -> int:
        """Put the saved corrections of the current image back on its result layer.

        Returns
        -------
        int
            Planes restored.

        """
        if self.image_layer is None:
            return 0
        self.flush(wait=True)
        fingerprint = self.key.rsplit("-", 1)[-1]
        saved = [c for k in self.store.find(fingerprint) for c in self.store.load(k, latest_only=True)]
        if not saved:
            return 0
        layer = ensure_labels_layer(viewer, self.image_layer, self.axes)
        self.attach(layer)
        assert self.tracker is not None
        selectors = [labels_plane_selector(self.axes, c.plane) for c in saved]
        with self.tracker.paused():
            replace_labels(layer, selectors, [c.labels for c in saved])
        for correction, selector in zip(saved, selectors, strict=True):
            self.tracker.edited[selector] = correction.edited
            if correction.fully_reviewed:
                self._fully_reviewed.add(correction.plane)
            # later edits of this plane continue the restored correction
            self.key = correction.key
            self._generation[(correction.key, correction.plane)] = correction.generation
            self.corrections.update(correction, save=False)
        return len(saved)
