"""Corrections controls: where to correct next, where they are saved, restoring them, marking a plane reviewed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import napari
from magicgui.widgets import Container, FileEdit, PushButton

from napari_unet.core.training.corrections import CorrectionStore
from napari_unet.gui.layers import Plane
from napari_unet.gui.layout import TextLine
from napari_unet.gui.postprocess_panel import SegmentedPlane
from napari_unet.gui.recorder import CorrectionRecorder
from napari_unet.gui.uncertain_objects import UncertainObjects


class CorrectionsPanel(Container):
    """Next uncertain object, the corrections folder (visible, changeable), Restore, Mark plane fully reviewed.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
    recorder : CorrectionRecorder
    current_plane : callable
        The plane the viewer shows of the current image (``None`` without an image).
    report : callable
        Shows a one-line status message.
    segmented : callable
        The shown plane of the segmented image with its network outputs
        (``None`` if not segmented), for "Next uncertain object".

    Attributes
    ----------
    uncertain : UncertainObjects
        The "Next uncertain object" button and what it shows.

    """

    def __init__(
        self,
        viewer: napari.viewer.Viewer,
        recorder: CorrectionRecorder,
        current_plane: Callable[[], Plane | None],
        report: Callable[[str], None],
        segmented: Callable[[], SegmentedPlane | None],
    ) -> None:
        super().__init__(labels=True)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self._recorder = recorder
        self._current_plane = current_plane
        self._report = report
        self.uncertain = UncertainObjects(viewer, segmented, recorder.corrected_region)
        self._folder = FileEdit(label="Folder", mode="d", value=recorder.store.folder)
        self._saved_info = TextLine()
        self._restore = PushButton(text="Restore saved corrections", enabled=False)
        self._reviewed = PushButton(
            text="Mark plane fully reviewed",
            tooltip=(
                "Every pixel of the shown plane is right: train on all of it, erased pixels as "
                "background (otherwise erased pixels teach nothing)"
            ),
        )
        # one above the other: side by side they would widen the dock past a laptop's share
        buttons = Container(widgets=[self._restore, self._reviewed], labels=False)
        buttons.margins = (0, 0, 0, 0)
        self.extend([self.uncertain, self._folder, self._saved_info, buttons])
        self._folder.changed.connect(self._on_folder_changed)
        self._restore.changed.connect(self._on_restore_clicked)
        self._reviewed.changed.connect(self._on_reviewed_clicked)

    def refresh(self) -> int:
        """Offer to restore when the current image has saved corrections; returns their number."""
        count = self._recorder.saved_count()
        self._restore.enabled = count > 0
        self._saved_info.value = f"{count} corrected plane(s) of this image saved" if count else ""
        return count

    def _on_folder_changed(self, folder: Path) -> None:
        self._recorder.flush(wait=True)
        self._recorder.corrections.store = CorrectionStore(folder)
        self.refresh()

    def _on_restore_clicked(self) -> None:
        count = self._recorder.restore(self._viewer)
        self._report(f"Restored {count} corrected plane(s)." if count else "Nothing to restore.")

    def _on_reviewed_clicked(self) -> None:
        plane = self._current_plane()
        if plane is None or self._recorder.tracker is None:
            self._report("Segment first, then mark a plane as reviewed.")
            return
        self._recorder.mark_reviewed(plane)
        self._report("The whole plane will train.")
        self.refresh()
