"""Record a person's corrections on a result layer and save them as they are made."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import napari
from qtpy.QtCore import QObject, QTimer

from napari_unet.core.segmentation.axes import read_plane
from napari_unet.core.training.corrections import (
    Correction,
    CorrectionSet,
    CorrectionStore,
    image_fingerprint,
    image_key,
)
from napari_unet.gui.layers import (
    EditTracker,
    Plane,
    ensure_labels_layer,
    image_data,
    int32_labels,
    labels_plane_selector,
)

SAVE_DELAY_MS = 300
"""Edits are written this long after the last stroke (strokes in a burst are written once)."""


class CorrectionRecorder:
    """Tracks edits on one image's result layer and writes each edited plane to the store.

    Parameters
    ----------
    corrections : CorrectionSet
        The session's corrections (what Fine-tune trains on).
    parent : QObject, optional
        Owner of the save timer (the widget), so that it stops with it.

    Attributes
    ----------
    edit_count : int
        Edits (strokes, fills, erasures) recorded so far, on any layer.

    """

    def __init__(self, corrections: CorrectionSet, parent: QObject | None = None) -> None:
        self.corrections = corrections
        self.image_layer: napari.layers.Image | None = None
        self.axes = ""
        self.key = ""
        self.tracker: EditTracker | None = None
        self._fully_reviewed: set[Plane] = set()
        self._generation: dict[tuple[str, Plane], int] = {}
        self._dirty: set[Plane] = set()
        # one writer thread: files are written in the order edits were made, off the GUI thread
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-unet-corrections")
        self._pending: list[Future[Any]] = []
        self.write_error: BaseException | None = None
        self.edit_count = 0
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

    def detach(self) -> None:
        """Stop tracking the result layer."""
        if self.tracker is not None:
            self.tracker.disconnect()
            self.tracker = None
        self._fully_reviewed.clear()

    def edited_planes(self) -> set[Plane]:
        """Planes of the current result layer with edits."""
        return self.tracker.edited_planes() if self.tracker is not None else set()

    def _on_edit(self, planes: set[Plane]) -> None:
        self.edit_count += 1
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

    def _on_written(self, future: Future[Any]) -> None:
        if future.exception() is not None:
            self.write_error = future.exception()

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

    def segmented(self, planes: set[Plane]) -> None:
        """``planes`` were segmented afresh: their saved corrections stay, new edits start anew."""
        self.flush(wait=True)
        if self.tracker is not None:
            self.tracker.forget(planes)
        for plane in planes:
            self._generation.pop((self.key, plane), None)
            self._fully_reviewed.discard(plane)

    def saved_count(self) -> int:
        """Planes of the current image with corrections on disk (under any name)."""
        self.flush(wait=True)
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
        for correction in saved:
            selector = labels_plane_selector(self.axes, correction.plane)
            layer.data[selector] = correction.labels
            self.tracker.edited[selector] = correction.edited
            if correction.fully_reviewed:
                self._fully_reviewed.add(correction.plane)
            # later edits of this plane continue the restored correction
            self.key = correction.key
            self._generation[(correction.key, correction.plane)] = correction.generation
            self.corrections.update(correction, save=False)
        layer.refresh()
        return len(saved)
