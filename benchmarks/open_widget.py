"""How long a person waits for a dock: shown (painted) and ready (torch and the model loaded).

Each dock opens in a fresh Python process, as on the first click of a session:
a 1366 x 768 napari window with an image already open, then Plugins > dock
(``add_plugin_dock_widget``, what the menu calls).  "shown" is the time until
the dock's contents are first painted, "ready" until the widget has loaded
torch and the model in the background (``widget.loading`` is done), and the
event-loop columns give how late a 10 ms QTimer fired meanwhile (the GUI
thread's stalls, from the click until ready).

Run under a display::

    QT_API=pyqt6 xvfb-run -a -s "-screen 0 1366x768x24" python benchmarks/open_widget.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

INTERVAL_MS = 10
DOCKS = {"segmentation": "U-Net segmentation", "batch": "U-Net batch segmentation"}
IMAGE = (
    Path(os.environ.get("NAPARI_UNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    / "nuclei-dsb2018/val/images/05040e2e959c3f5632558fc9683fec88f0010026c555b499066346f67fdd0e13.tif"
)


def measure(dock_name: str) -> dict[str, float]:
    """Open one dock in this process and time it (the child's job)."""
    scratch = Path(tempfile.mkdtemp(prefix="napari-unet-open-"))
    os.environ["NAPARI_UNET_MODEL_DIR"] = str(scratch / "models")
    os.environ["NAPARI_UNET_CORRECTIONS_DIR"] = str(scratch / "corrections")

    import napari  # noqa: TID251 (a GUI benchmark)
    from qtpy.QtCore import QElapsedTimer, QEvent, QObject, Qt, QTimer  # noqa: TID251
    from qtpy.QtWidgets import QApplication  # noqa: TID251

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.add_image(tifffile.imread(IMAGE), name=IMAGE.name)
    app = QApplication.instance()
    end = time.perf_counter() + 2.0
    while time.perf_counter() < end:  # napari settles (first draw, status thread)
        app.processEvents()
        time.sleep(0.01)

    clock = QElapsedTimer()
    delays: list[tuple[float, float]] = []  # (when, lateness ms)
    last = [0.0]

    def tick() -> None:
        now = clock.nsecsElapsed() / 1e6
        delays.append((time.perf_counter(), max(0.0, now - last[0] - INTERVAL_MS)))
        last[0] = now

    painted: list[float] = []

    class FirstPaint(QObject):
        def eventFilter(self, watched, event):  # noqa: N802 (Qt override)
            if event.type() == QEvent.Type.Paint and not painted:
                painted.append(time.perf_counter())
            return False

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(INTERVAL_MS)
    timer.timeout.connect(tick)
    clock.start()
    timer.start()
    clicked = time.perf_counter()
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", DOCKS[dock_name])
    returned = time.perf_counter()
    watcher = FirstPaint()
    widget.native.installEventFilter(watcher)
    for child in widget.native.findChildren(QObject):
        child.installEventFilter(watcher)
    deadline = time.perf_counter() + 120
    while (not painted or getattr(widget, "loading", None) is not None) and time.perf_counter() < deadline:
        app.processEvents()
        time.sleep(0.001)
    ready = time.perf_counter()
    timer.stop()
    viewer.close()
    shown = painted[0] if painted else float("nan")
    # stalls until the dock shows (the click itself) and while it loads in the background
    opening = np.asarray([late for when, late in delays if when <= shown] or [0.0])
    loading = np.asarray([late for when, late in delays if when > shown] or [0.0])
    return {
        "returned_s": returned - clicked,
        "shown_s": shown - clicked,
        "ready_s": ready - clicked,
        "opening_worst_ms": float(opening.max()),
        "loading_worst_ms": float(loading.max()),
        "loading_p99_ms": float(np.percentile(loading, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dock", choices=sorted(DOCKS), help=argparse.SUPPRESS)  # a child's one dock
    parser.add_argument("--repeat", type=int, default=1, help="fresh processes per dock (default 1)")
    args = parser.parse_args()
    if args.dock:
        print(json.dumps(measure(args.dock)))
        return

    rows = []
    for dock in DOCKS:
        for _ in range(args.repeat):
            child = subprocess.run(
                [sys.executable, __file__, "--dock", dock], capture_output=True, text=True, check=True
            )
            rows.append((dock, json.loads(child.stdout.strip().splitlines()[-1])))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"first opening of each dock in a fresh process; {os.cpu_count()} cores, load average {load:.1f}")
    print(
        "call: add_plugin_dock_widget returns; shown: dock painted; ready: torch and the model loaded "
        "(seconds after the click)"
    )
    print("event-loop stalls (10 ms timer lateness): until shown; then while loading, worst and p99")
    print(
        f"{'dock':<13} {'call s':>7} {'shown s':>8} {'ready s':>8} "
        f"{'stall to shown ms':>18} {'loading worst ms':>17} {'p99 ms':>7}"
    )
    for dock, row in rows:
        print(
            f"{dock:<13} {row['returned_s']:7.2f} {row['shown_s']:8.2f} {row['ready_s']:8.2f} "
            f"{row['opening_worst_ms']:18.0f} {row['loading_worst_ms']:17.0f} {row['loading_p99_ms']:7.0f}"
        )


if __name__ == "__main__":
    main()
