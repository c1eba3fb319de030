"""Regenerate the screenshots of the dock widget on a laptop-sized screen (needs a display).

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1366x768x24" python docs/make_screenshots.py [--model nuclei]

A 1366 x 768 napari window, the image opened first, then the dock from the
Plugins menu.  Writes ``docs/images/widget-segment.png`` (after Segment, the
sections as a first-time user sees them) and ``docs/images/widget-finetune.png``
(Fine-tune unfolded, while fine-tuning on a corrected nucleus).  Models and
corrections go to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
IMAGE = (
    HERE.parents[1]
    / "shared/data/nuclei-dsb2018/val/images"
    / "05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13.tif"
)
LABELS = IMAGE.parents[1] / "labels" / IMAGE.name


def fix_worst_nucleus(labels, truth: np.ndarray) -> None:
    """Correct the worst-segmented nucleus as a person would: erase what is there, paint it anew."""
    predicted = labels.data
    worst, worst_iou = 0, 2.0
    for index in range(1, int(truth.max()) + 1):
        region = truth == index
        if not region.any():
            continue
        ids, counts = np.unique(predicted[region], return_counts=True)
        best = max(
            (c / np.logical_or(region, predicted == i).sum() for i, c in zip(ids, counts, strict=True) if i),
            default=0.0,
        )
        if best < worst_iou:
            worst, worst_iou = index, best
    region = truth == worst
    touched = np.isin(predicted, np.unique(predicted[region])[1:])
    labels.data_setitem(np.nonzero(touched & ~region), 0)
    labels.data_setitem(np.nonzero(region), int(predicted.max()) + 1)


def main() -> None:
    """Open napari with the widget, segment, correct, fine-tune, and take the two screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei")
    parser.add_argument("--out", default=str(HERE / "images"))
    parser.add_argument("--size", default="1366x768", help="window size, WIDTHxHEIGHT (default 1366x768)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="napari-unet-shots-"))
    os.environ["NAPARI_UNET_MODEL_DIR"] = str(scratch / "models")
    os.environ["NAPARI_UNET_CORRECTIONS_DIR"] = str(scratch / "corrections")
    warnings.filterwarnings("ignore")  # a warning toast would cover the canvas

    import napari
    import torch
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication, QScrollArea

    from napari_unet.core.models.registry import resolve_model

    torch.set_num_threads(1)
    viewer = napari.Viewer(show=True)
    width, height = (int(n) for n in args.size.split("x"))
    viewer.window._qt_window.resize(width, height)
    viewer.add_image(tifffile.imread(IMAGE), name="nuclei (DSB 2018)")
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    widget.confirm = lambda question: True
    widget.select_model(resolve_model(args.model))
    app = QApplication.instance()

    def wait(condition, seconds: float = 300) -> None:
        end = time.perf_counter() + seconds
        while not condition() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.02)

    widget.segment()
    wait(lambda: widget.segment_worker is None)
    wait(lambda: False, 0.5)
    viewer.reset_view()
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    wait(lambda: False, 0.5)
    viewer.screenshot(str(Path(args.out) / "widget-segment.png"), canvas_only=False)

    labels = viewer.layers["nuclei (DSB 2018) labels"]
    fix_worst_nucleus(labels, tifffile.imread(LABELS))
    widget.sections["Fine-tune"].expanded = True
    widget.finetune._steps.value = 60
    widget.finetune.start()
    wait(lambda: len(widget.finetune.loss_plot.values) >= 25)
    widget.native.findChild(QScrollArea).ensureWidgetVisible(widget.finetune.loss_plot)
    wait(lambda: False, 0.3)
    viewer.screenshot(str(Path(args.out) / "widget-finetune.png"), canvas_only=False)
    widget.finetune.stop(keep=False)
    wait(lambda: not widget.finetune.running)
    viewer.close()


if __name__ == "__main__":
    main()
