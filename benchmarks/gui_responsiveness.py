"""How long napari's event loop stalls while the widget segments and fine-tunes.

A QTimer asks to fire every 10 ms; each firing's lateness is a stall of the GUI
thread.  Reported per phase (idle, segmenting, fine-tuning): worst and 99th
percentile lateness, and the torch thread count.  "click ms" is how long the
button's own handler takes before the job starts (creating the result layer,
napari's activity bar); it is not counted in the stalls.  The target is a worst
stall under 50 ms.

Run under a display (napari needs OpenGL)::

    xvfb-run -a python benchmarks/gui_responsiveness.py [--model nuclei] [--torch-threads N] [--trace FILE]

``--torch-threads`` overrides the widget's policy (all cores but one) to compare.
``--trace FILE`` records garbage collections, the jobs' progress records and
stacks sampled while the event loop is late, writes them to FILE (JSON) and
prints what overlapped each stall over 50 ms (``_stall_trace.py``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from _stall_trace import StallTrace

INTERVAL_MS = 10
IMAGE = (
    Path(__file__).resolve().parents[2]
    / "shared/data/nuclei-dsb2018/val/images"
    / "193ffaa5272d5c421ae02130a64d98ad120ec70e4ed97a72cdcd4801ce93b066.tif"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="nuclei", help="model name or file (default: nuclei)")
    parser.add_argument("--image", default=str(IMAGE), help="a 2-D TIFF (default: a 520 x 696 DSB image)")
    parser.add_argument("--steps", type=int, default=30, help="fine-tuning steps (default 30)")
    parser.add_argument("--torch-threads", type=int, default=0, help="torch threads (default: widget policy)")
    parser.add_argument("--trace", metavar="FILE", help="record what overlaps each stall over 50 ms (JSON)")
    args = parser.parse_args()
    trace = StallTrace(interval_ms=INTERVAL_MS) if args.trace else None
    if trace is not None:
        trace.start()
        trace.phase("start-up")

    scratch = tempfile.mkdtemp(prefix="napari-unet-bench-")
    os.environ["NAPARI_UNET_MODEL_DIR"] = str(Path(scratch) / "models")
    os.environ["NAPARI_UNET_CORRECTIONS_DIR"] = str(Path(scratch) / "corrections")

    import napari  # noqa: TID251 (a GUI benchmark)
    from qtpy.QtCore import QElapsedTimer, QEventLoop, Qt, QTimer  # noqa: TID251
    from qtpy.QtWidgets import QApplication  # noqa: TID251

    from napari_unet.core.models.registry import resolve_model
    from napari_unet.gui import workers

    if args.torch_threads:
        workers.limit_torch_threads = lambda: torch.set_num_threads(args.torch_threads)
    if trace is not None:  # the widget's workers look these up when a job starts
        workers.segment_job = trace.wrap_job(workers.segment_job, "segment")
        workers.fine_tune_and_save = trace.wrap_job(workers.fine_tune_and_save, "fine-tune")

    image = tifffile.imread(args.image)
    viewer = napari.Viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    widget.confirm = lambda question: True
    widget.select_model(resolve_model(args.model))
    while widget.loading is not None:  # torch and the model load in the background (open_widget.py)
        QApplication.processEvents()
        time.sleep(0.01)

    def measure(phase, start, running) -> tuple[list[float], float, float]:
        # napari's own event loop runs; a 10 ms timer records how late each of its ticks is
        loop = QEventLoop()
        clock = QElapsedTimer()
        delays: list[float] = []
        last = [0.0]

        def tick() -> None:
            now = clock.nsecsElapsed() / 1e6
            delays.append(max(0.0, now - last[0] - INTERVAL_MS))
            last[0] = now
            if trace is not None:
                trace.tick()
            if not running():
                loop.quit()

        timer = QTimer()
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.setInterval(INTERVAL_MS)
        timer.timeout.connect(tick)
        if trace is not None:
            trace.phase(phase)
        started = time.perf_counter()
        start()
        click_ms = (time.perf_counter() - started) * 1000
        clock.start()
        timer.start()
        loop.exec()
        timer.stop()
        if trace is not None:
            trace.pause()
        return delays, time.perf_counter() - started, click_ms

    rows = []
    end = [0.0]

    def idle_start() -> None:
        end[0] = time.perf_counter() + 2.0

    rows.append(("idle", *measure("idle", idle_start, lambda: time.perf_counter() < end[0])))
    viewer.add_image(image, name="image")
    rows.append(
        ("segmenting", *measure("segmenting", widget.segment, lambda: widget.segment_worker is not None))
    )
    labels = viewer.layers["image labels"]
    labels.brush_size = 12
    labels.paint((40, 40), int(labels.data.max()) + 1)
    labels.fill(tuple(np.argwhere(labels.data > 0)[0]), 0)
    widget.recorder.flush()
    widget.finetune._steps.value = args.steps
    rows.append(
        ("fine-tuning", *measure("fine-tuning", widget.finetune.start, lambda: widget.finetune.running))
    )
    if trace is not None:
        trace.phase("closing the viewer")
    viewer.close()

    print(
        f"event-loop delay of a {INTERVAL_MS} ms QTimer; image {image.shape}, torch threads "
        f"{torch.get_num_threads()} of {os.cpu_count()} cores, model {args.model}"
    )
    print(
        "click ms: the button's own handler, before the job starts; p99/worst: timer lateness during the job"
    )
    print(f"{'phase':<12} {'seconds':>8} {'click ms':>9} {'ticks':>6} {'p99 ms':>8} {'worst ms':>9}")
    for phase, values, seconds, click_ms in rows:
        values_ms = np.asarray(values) if values else np.zeros(1)
        print(
            f"{phase:<12} {seconds:8.1f} {click_ms:9.0f} {len(values):6d} "
            f"{np.percentile(values_ms, 99):8.1f} {values_ms.max():9.1f}"
        )
    if trace is not None:
        trace.stop()
        trace.report(args.trace)


if __name__ == "__main__":
    main()
