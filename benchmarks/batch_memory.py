"""Peak memory and throughput of ``segment`` on stacks of growing size: streaming vs loading whole.

Each stack is N planes of a 2048 x 2048 uint16 mosaic of real DSB 2018 nuclei
(shifted a little from plane to plane), written uncompressed to a temporary
folder.  Every case runs in its own process, which reports its peak resident
memory (``ru_maxrss``) and its time:

- **streaming**: :func:`napari_unet.core.batch.local.segment_files`, what
  ``napari-unet segment`` runs: planes are read one at a time and labels are
  written page by page;
- **whole**: the stack read into memory, segmented into one label array
  (:meth:`Segmenter.segment`) and written at the end, as before streaming.

Both segment the same planes with the same model and settings and must give
the same labels (checked).  Prints a Markdown table; not a timed test.

Usage::

    python benchmarks/batch_memory.py [--planes 5 10 20 40] [--size 2048] [--threads 2]
                                      [--model nuclei] [--diameter 24] [--modes streaming whole]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from _common import machine, nuclei_mosaic, table


def write_stack(path: Path, planes: int, size: int) -> None:
    """Write ``planes`` shifted copies of a nuclei mosaic, one page at a time (little memory here)."""
    base, _ = nuclei_mosaic(size)
    pages = (np.roll(base, (3 * z, 2 * z), axis=(0, 1)) for z in range(planes))
    tifffile.imwrite(
        path,
        pages,
        shape=(planes, size, size),
        dtype=np.uint16,
        photometric="minisblack",
        metadata={"axes": "ZYX"},
    )


def rss_mb() -> float:
    """Current resident memory of this process (MB), from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, path: Path, outdir: Path, args: argparse.Namespace) -> None:
    """One case, in its own process: prints one JSON line."""
    import torch

    from napari_unet.core.batch.local import BatchSettings, segment_files
    from napari_unet.core.config import InferenceConfig
    from napari_unet.core.models.registry import load_model, resolve_model
    from napari_unet.core.progress import run
    from napari_unet.core.segmentation.segmenter import Segmenter

    torch.set_num_threads(args.threads)
    segmenter = Segmenter(
        load_model(resolve_model(args.model)), InferenceConfig(device="cpu", diameter=args.diameter)
    )
    ready = rss_mb()
    started = time.perf_counter()
    if mode == "streaming":
        (result,) = run(segment_files([path], outdir, segmenter, BatchSettings(stitch=True, overwrite=True)))
        assert result.status == "done", result.error
    else:
        with tifffile.TiffFile(path) as tiff:
            image, axes = tiff.series[0].asarray(), tiff.series[0].axes
        labels = run(segmenter.segment(image, axes=axes, stitch=True)).labels
        dtype = np.uint16 if labels.max() <= np.iinfo(np.uint16).max else np.uint32
        tifffile.imwrite(
            outdir / path.name, labels.astype(dtype), compression="zlib", photometric="minisblack"
        )
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"ready_mb": ready, "peak_mb": peak, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--planes", type=int, nargs="+", default=[5, 10, 20, 40])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="nuclei")
    parser.add_argument(
        "--diameter",
        type=float,
        default=24.0,
        help="object size given (24: the nuclei model's own, no resize)",
    )
    parser.add_argument("--modes", nargs="+", default=["streaming", "whole"], choices=["streaming", "whole"])
    parser.add_argument("--child", nargs=3, metavar=("MODE", "STACK", "OUTDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, stack, outdir = args.child
        child(mode, Path(stack), Path(outdir), args)
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for planes in args.planes:
            stack = folder / f"stack{planes}.tif"
            write_stack(stack, planes, args.size)
            outputs = {}
            for mode in args.modes:
                outdir = folder / mode
                outdir.mkdir(exist_ok=True)
                command = [sys.executable, __file__, "--child", mode, str(stack), str(outdir)]
                command += [
                    "--threads",
                    str(args.threads),
                    "--model",
                    args.model,
                    "--diameter",
                    str(args.diameter),
                ]
                done = subprocess.run(command, capture_output=True, text=True, check=False)
                if done.returncode:
                    raise SystemExit(f"{mode} on {planes} planes failed:\n{done.stderr}")
                report = json.loads(done.stdout.strip().splitlines()[-1])
                outputs[mode] = outdir / stack.name
                megapixels = planes * args.size**2 / 1e6
                rows.append(
                    (
                        planes,
                        f"{stack.stat().st_size / 2**20:.0f}",
                        mode,
                        f"{report['ready_mb']:.0f}",
                        f"{report['peak_mb']:.0f}",
                        f"{report['peak_mb'] - report['ready_mb']:.0f}",
                        f"{report['seconds']:.1f}",
                        f"{planes / report['seconds']:.2f}",
                        f"{megapixels / report['seconds']:.2f}",
                    )
                )
                print(rows[-1], file=sys.stderr, flush=True)
            if len(outputs) == 2:
                same = np.array_equal(
                    tifffile.imread(outputs["streaming"]), tifffile.imread(outputs["whole"])
                )
                assert same, f"streaming and whole labels differ on {planes} planes"
            stack.unlink()
    header = (
        "planes",
        "input MiB",
        "mode",
        "RSS after model load MB",
        "peak RSS MB",
        "peak - loaded MB",
        "seconds",
        "planes/s",
        "Mpixel/s",
    )
    print(
        f"{args.size} x {args.size} uint16 planes, model {args.model}, diameter {args.diameter:g}, stitched"
    )
    print(f"{machine()}\n")
    print(table(header, rows))


if __name__ == "__main__":
    main()
