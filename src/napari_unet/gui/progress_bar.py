"""Show a job's progress in the widget and in napari's activity dock, cheaply."""

from __future__ import annotations

import time

from magicgui.widgets import ProgressBar
from napari.utils import progress

from napari_unet.core.progress import Progress

NAPARI_BAR_INTERVAL_S = 0.5
"""napari's activity bar repaints synchronously (10-20 ms a time): update it at most this often."""


class JobProgress:
    """A widget progress bar mirrored, throttled, in a napari activity-dock progress bar.

    Parameters
    ----------
    bar : magicgui.widgets.ProgressBar
        The widget's own bar (cheap to update; updated on every record).

    """

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        self._napari: progress | None = None
        self._last = 0.0

    def start(self, description: str, total: int) -> None:
        """Show both bars at 0 of ``total``."""
        self.close()
        self.bar.max, self.bar.value, self.bar.visible = max(total, 1), 0, True
        self._napari = progress(total=total, desc=description)
        self._last = time.perf_counter()

    def update(self, record: Progress) -> None:
        """Show ``record`` (a record with ``total == 0`` means "still busy, no count")."""
        if not record.total:
            return
        self.bar.max, self.bar.value = record.total, min(record.step, record.total)
        now = time.perf_counter()
        if self._napari is not None and (now - self._last >= NAPARI_BAR_INTERVAL_S):
            self._last = now
            if self._napari.total != record.total:
                self._napari.total = record.total
            self._napari.update(max(0, record.step - self._napari.n))

    def close(self) -> None:
        """Hide the widget bar and remove napari's."""
        self.bar.visible = False
        if self._napari is not None:
            self._napari.close()
            self._napari = None
