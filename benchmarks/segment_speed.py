"""End-to-end and network-only speed of `segment` on a large 2-D mosaic of real nuclei.

Prints a table; not a timed test.  Compares, in the same process and on the same input:

- this machine's large-matrix-multiply throughput (fp32 and bf16), the hardware ceiling;
- our network alone (fp32 and bf16 autocast) as achieved FLOP/s and a fraction of that ceiling;
- our whole pipeline (normalise, rescale, tile, network, blend, post-process, write) with the
  default settings and with mixed precision, and the share of time spent outside the network.

Usage: python benchmarks/segment_speed.py [--size 4096] [--repeats 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_unet.core.config import InferenceConfig
from napari_unet.core.inference import Segmenter, _run
from napari_unet.core.io import write_labels
from napari_unet.core.weights import load_model, resolve_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei-dsb2018" / "val" / "images"


def mosaic(size: int) -> np.ndarray:
    """Tile real DSB validation images (fluorescence, bright nuclei) into a size x size image."""
    tiles = []
    for path in sorted(DATA.glob("*.tif")):
        image = tifffile.imread(path).astype(np.float32)
        if image.mean() < 0.5 * image.max():  # skip the few brightfield/histology images
            tiles.append((image - image.min()) / max(float(np.ptp(image)), 1.0))
    out = np.zeros((size, size), np.float32)
    y = x = row_height = 0
    index = 0
    while y < size:
        tile = tiles[index % len(tiles)]
        index += 1
        h, w = min(tile.shape[0], size - y), min(tile.shape[1], size - x)
        out[y : y + h, x : x + w] = tile[:h, :w]
        row_height = max(row_height, h)
        x += w
        if x >= size:
            x, y, row_height = 0, y + row_height, 0
    return (out * 4000).astype(np.uint16)


def matmul_throughput(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started)


def network_flops_per_pixel(width: int) -> float:
    """DESIGN.md: about 179 * C^2 multiply-adds per pixel for 4 poolings."""
    return 2 * 179 * width**2


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    image = mosaic(args.size)
    bundle = load_model(resolve_model("nuclei"))
    flops = network_flops_per_pixel(bundle.config.base_width)
    rows = []
    ceiling = {"fp32": matmul_throughput(torch.float32), "bf16": matmul_throughput(torch.bfloat16)}
    for precision, amp in (("fp32", False), ("bf16", True)):
        segmenter = Segmenter(bundle, InferenceConfig(device="cpu", diameter=0, amp=amp))
        normalised = segmenter.normalise(image[None])
        network_times, total_times = [], []
        for _ in range(args.repeats):
            started = time.perf_counter()
            _run(segmenter.predict_normalised(normalised))
            network_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            job = Segmenter(bundle, InferenceConfig(device="cpu", amp=amp)).segment(image, axes="YX")
            result = None
            for record in job:
                result = record.result or result
            with tempfile.TemporaryDirectory() as tmp:
                write_labels(Path(tmp) / "labels.tif", result.labels)
            total_times.append(time.perf_counter() - started)
        network, total = min(network_times), min(total_times)
        achieved = flops * image.size / network
        rows.append(
            (precision, network, achieved / 1e9, achieved / ceiling[precision], total, result.diameter)
        )
    print(
        f"\nsegment of a {args.size}x{args.size} mosaic of DSB nuclei, model nuclei "
        f"(width {bundle.config.base_width}), CPU threads {torch.get_num_threads()}"
    )
    print(
        f"matmul ceiling: fp32 {ceiling['fp32'] / 1e9:.0f} GFLOP/s, bf16 {ceiling['bf16'] / 1e9:.0f} GFLOP/s\n"
    )
    print(
        "| precision | network only (s, scale 1) | GFLOP/s | of matmul ceiling | end to end (s, auto size) | diameter |"
    )
    print("|---|---|---|---|---|---|")
    for precision, network, gflops, fraction, total, diameter in rows:
        print(
            f"| {precision} | {network:.1f} | {gflops:.0f} | {fraction:.0%} | {total:.1f} | {diameter:.1f} |"
        )


if __name__ == "__main__":
    main()
