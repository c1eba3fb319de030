"""Seconds per fine-tuning step of the default (nuclei) model, and for 100 steps.

Prints a Markdown table; not a timed test.  Configurations alternate within every
repeat, on the same samples (real DSB 2018 training images with their labels;
"corrections" runs supervise only discs around a few objects per image, as the
reviewed regions of a correction session do):

- 4 crops of 256², as ``napari-unet train --from nuclei`` fine-tunes (batch-norm
  statistics frozen, bf16 autocast), with all torch threads, with one, and in fp32;
- a fine-tune from corrections as the widget runs it
  (:func:`napari_unet.core.training.finetune.fine_tune_config`: 4 crops of 128²,
  learning rate 1e-4, frozen batch-norm statistics, bf16, a snapshot of the
  weights every 5 steps for "Stop and keep", all cores but one);
- the same on CUDA when a GPU is present.

Each row reports the share of a step spent drawing and augmenting the crops.

Usage: python benchmarks/finetune_speed.py [--steps 100] [--repeats 1] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi

from _common import DATA, Stopwatch, machine, median, table, torch_threads
from napari_unet.core.config import TrainingConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.training.finetune import fine_tune_config
from napari_unet.core.training.loop import train
from napari_unet.core.training.samples import CropSampler, TrainingSample, prepare_sample

TRAIN = DATA / "nuclei-dsb2018" / "train"


def samples(bundle: ModelBundle, count: int, corrections: bool) -> list[TrainingSample]:
    """``count`` fluorescence training images; with ``corrections``, supervised only near 5 objects each."""
    out = []
    rng = np.random.default_rng(0)
    for path in sorted((TRAIN / "images").glob("*.tif")):
        image = tifffile.imread(path)
        if image.ndim != 2 or image.mean() > 0.5 * image.max() or min(image.shape) < 256:
            continue
        labels = tifffile.imread(TRAIN / "labels" / path.name)
        mask = None
        if corrections:
            ids = rng.choice(np.unique(labels[labels > 0]), size=min(5, int(labels.max())), replace=False)
            mask = ndi.binary_dilation(np.isin(labels, ids), iterations=20)
        out.append(prepare_sample(image, labels, bundle.config, bundle.preprocess, mask=mask, name=path.name))
        if len(out) == count:
            return out
    raise SystemExit(f"fewer than {count} usable training images under {TRAIN} (set NAPARI_UNET_DATA)")


@dataclass
class Row:
    name: str
    config: TrainingConfig
    threads: int
    corrections: bool
    device: str = "cpu"
    seconds: list[float] = field(default_factory=list)
    sampling: list[float] = field(default_factory=list)


def run(row: Row, bundle: ModelBundle, data: list[TrainingSample]) -> None:
    stopwatch = Stopwatch()
    snapshots = (lambda current: {}) if row.config.validate_every else None
    with torch_threads(row.threads), stopwatch.patch(CropSampler, "batch", "sampling"):
        started = time.perf_counter()
        for _ in train(bundle, data, row.config, device=row.device, validate=snapshots):
            pass
        if row.device == "cuda":
            torch.cuda.synchronize()
        row.seconds.append(time.perf_counter() - started)
    row.sampling.append(stopwatch.seconds.get("sampling", 0.0))


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    every = torch.get_num_threads()
    widget_threads = max(1, (os.cpu_count() or 2) - 1)  # gui.workers.limit_torch_threads
    print(f"machine: {machine()}\n")
    bundle = load_model(resolve_model("nuclei"))
    whole = samples(bundle, 4, corrections=False)
    partial = samples(bundle, 4, corrections=True)
    cli = TrainingConfig(
        steps=args.steps, batch_size=4, crop_size=256, learning_rate=5e-4, freeze_norm=True, amp=True
    )
    widget = fine_tune_config(args.steps, device="cpu")  # bf16 on CPU and CUDA alike
    rows = [
        Row(f"4 x 256², bf16, {every} threads (CLI fine-tune)", cli, every, False),
        Row("4 x 256², bf16, 1 thread", cli, 1, False),
        Row(
            f"corrections: widget settings (4 x 128², bf16), {widget_threads} thread(s)",
            widget,
            widget_threads,
            True,
        ),
        Row(f"corrections: widget settings, {every} threads", widget, every, True),
        Row(f"4 x 256², fp32, {every} threads", replace(cli, amp=False), every, False),
    ]
    if torch.cuda.is_available():
        rows += [
            Row("GPU: 4 x 256², mixed precision", cli, every, False, "cuda"),
            Row("GPU: 4 x 256², fp32", replace(cli, amp=False), every, False, "cuda"),
            Row("GPU: corrections, widget settings", widget, every, True, "cuda"),
        ]
    else:
        print("GPU: skipped (no CUDA device: torch.cuda.is_available() is False)\n")
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout` still gets the table of the runs so far
    try:
        for _ in range(args.repeats):
            for row in rows:
                run(row, bundle, partial if row.corrections else whole)
                print(f"  {row.name}: {row.seconds[-1]:.1f} s", flush=True)
    except KeyboardInterrupt:
        print("stopped early: the table of the runs so far")
    lines = []
    for row in (row for row in rows if row.seconds):
        seconds = median(row.seconds)
        lines.append(
            (
                row.name,
                f"{seconds / args.steps:.3f}",
                f"{seconds * 100 / args.steps:.0f}",
                f"{median(row.sampling) / seconds:.0%}",
            )
        )
    print(f"\nFine-tuning nuclei, {args.steps} steps, median of {args.repeats}\n")
    print(table(["configuration", "s per step", "s per 100 steps", "drawing crops"], lines))


if __name__ == "__main__":
    main()
