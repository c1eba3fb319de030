"""End-to-end ``segment`` of a large mosaic of real nuclei: ours, ours with each optimisation off, MONAI.

Prints Markdown tables; not a timed test.  In one process, on the same input,
alternating configurations within every repeat so that background load hits all
of them alike:

- ours end to end, as ``napari-unet segment`` runs it (read the TIFF, estimate the
  object size, normalise, tile, network, blend, post-process, write the labels),
  with the default settings and with each optimisation switched off in turn;
- MONAI's ``sliding_window_inference`` (overlap 0.25, gaussian blending) with a
  ``BasicUNet`` sized to the same FLOPs as our default model: the network pass
  alone, on the image already normalised, in float32 (as MONAI runs by default)
  and under bf16 autocast;
- where each of our seconds goes (network, post-processing, I/O, ...);
- AP@0.5 of our labels against the mosaic's ground truth, so a speed-up that
  costs accuracy shows;
- the same on CUDA when a GPU is present.

Usage::

    pip install -e .[bench]
    python benchmarks/segment_speed.py [--size 4096] [--repeats 3] [--threads N] [--part headline]

``--part headline`` runs ours, "before" and MONAI; ``--part ablations`` ours with each
optimisation switched off (ratios to the first row); the default runs both.
"""

from __future__ import annotations

import argparse
import copy
import math
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential, watershed
from torch import nn

from _common import (
    Stopwatch,
    machine,
    matmul_throughput,
    median,
    network_flops,
    nuclei_mosaic,
    table,
    torch_threads,
)
from napari_unet.core import progress
from napari_unet.core.batch.local import BatchSettings, segment_files
from napari_unet.core.config import InferenceConfig, PostprocessConfig
from napari_unet.core.evaluation.metrics import average_precision
from napari_unet.core.io import provenance as provenance_module
from napari_unet.core.io.stacks import LabelStackWriter
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation import segmenter as inference_module
from napari_unet.core.segmentation import tiling as tiling_module
from napari_unet.core.segmentation.segmenter import PlaneOutputs, Segmenter

MONAI_FEATURES = (16, 32, 64, 128, 256, 12)  # equal FLOPs to our width-16 model (see the FLOP table)
MONAI_ROI = 256  # MONAI's fastest of roi 256/512/1024 x sw_batch_size 1/4 here (network_throughput.py)


# -- the previous implementation, for the "off" rows --------------------------------------------


def previous_tile_layout(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Tiles at a fixed stride, the last one flush with the end (however much it overlaps)."""
    tile = math.ceil(tile / multiple) * multiple
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    edge = min(tile, size)
    if size <= edge:
        return edge, [0]
    return edge, [*range(0, size - edge, stride), size - edge]


def whole_image_watershed(
    probabilities: np.ndarray, heads: tuple[str, ...], config: PostprocessConfig, min_size: float
) -> np.ndarray:
    """Post-processing as it was: one watershed over the whole image, then renumbering."""
    channel = {name: probabilities[i] for i, name in enumerate(heads)}
    foreground = channel["foreground"] > config.foreground_threshold
    four = ndi.generate_binary_structure(2, 1)
    seeds = foreground & (channel["distance"] > config.seed_threshold) & (channel["boundary"] < 0.5)
    markers, _ = ndi.label(seeds, structure=four)
    labels = watershed(-channel["distance"], markers, mask=foreground).astype(np.int32)
    unseeded, count = ndi.label(foreground & (labels == 0), structure=four)
    if count:
        labels[unseeded > 0] = unseeded[unseeded > 0] + labels.max()
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    labels = np.where(small[labels], 0, labels).astype(np.int32)
    return relabel_sequential(labels)[0].astype(np.int32)


class Contiguous(Segmenter):
    """Channels-first (NCHW) layout instead of channels-last."""

    def _prepare_network(self, network: nn.Module) -> nn.Module:
        self.channels_last = False
        return super()._prepare_network(network)


class Unfolded(Segmenter):
    """Batch norm run as its own layer instead of folded into the convolutions."""

    def _prepare_network(self, network: nn.Module) -> nn.Module:
        prepared = copy.deepcopy(network).eval().to(self.device)
        return prepared.to(memory_format=torch.channels_last) if self.channels_last else prepared


class OneTileAtATime(Segmenter):
    """Tiles one after another, each operator split across the torch threads."""

    def _tile_workers(self) -> int:
        return 1


class WholeImageWatershed(Segmenter):
    """The previous post-processing."""

    def labels(self, outputs: PlaneOutputs, postprocess: PostprocessConfig | None = None) -> np.ndarray:
        config = postprocess or self.postprocess
        return whole_image_watershed(
            outputs.probabilities, self.heads, config, config.min_size / outputs.scale**2
        )


class Before(WholeImageWatershed, Unfolded, OneTileAtATime):
    """As before this work: fp32, batches of 4 tiles one at a time, fixed stride, unfolded, old watershed."""


@contextmanager
def patched(owner: Any, attribute: str, value: Any) -> Iterator[None]:
    original = getattr(owner, attribute)
    setattr(owner, attribute, value)
    try:
        yield
    finally:
        setattr(owner, attribute, original)


# -- runs ---------------------------------------------------------------------------------------


@dataclass
class Row:
    """One configuration: how to run it, and what its runs measured."""

    name: str
    run: Callable[[Path, Stopwatch], dict[str, Any]]
    seconds: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def timed_phases(stopwatch: Stopwatch, segmenter: Segmenter) -> ExitStack:
    """Time the phases of a ``segment`` run (the size estimate as a whole, its network passes included)."""
    stack = ExitStack()
    stack.enter_context(
        stopwatch.patch(segmenter, "estimate_diameter", "size estimate (all of it)", opaque=True)
    )
    for owner, attribute, name in (
        (segmenter, "_forward", "network"),
        (segmenter, "normalise", "normalise"),
        (inference_module, "plane_labels", "post-process"),
        (inference_module, "rescale", "resample"),
        (inference_module, "resize_to", "resample"),
        (inference_module, "read_plane", "read"),
        (provenance_module, "file_digest", "input checksum"),
        (LabelStackWriter, "write", "write"),
        (LabelStackWriter, "__exit__", "write"),
    ):
        stack.enter_context(stopwatch.patch(owner, attribute, name))
    return stack


def ours(
    bundle: ModelBundle,
    segmenter_class: type[Segmenter] = Segmenter,
    threads: int | None = None,
    tile_layout: Callable[..., tuple[int, list[int]]] | None = None,
    **inference: Any,
) -> Callable[[Path, Stopwatch], dict[str, Any]]:
    """A run of ``segment_files`` on one TIFF with a given segmenter setup."""

    def run(path: Path, stopwatch: Stopwatch) -> dict[str, Any]:
        before = torch.get_num_threads()
        with ExitStack() as stack, tempfile.TemporaryDirectory() as outdir:
            if threads:
                torch.set_num_threads(threads)
                stack.callback(torch.set_num_threads, before)
            if tile_layout is not None:
                stack.enter_context(patched(tiling_module, "tile_layout", tile_layout))
            segmenter = segmenter_class(bundle, InferenceConfig(device="cpu", **inference))
            stack.enter_context(timed_phases(stopwatch, segmenter))
            started = time.perf_counter()
            (outcome,) = progress.run(
                segment_files([path], Path(outdir), segmenter, BatchSettings(overwrite=True))
            )
            elapsed = time.perf_counter() - started
            if outcome.status != "done":
                raise RuntimeError(f"segment failed: {outcome}")
            labels = tifffile.imread(outcome.output)
        return {"seconds": elapsed, "labels": labels, "amp": segmenter.amp, "batch": segmenter.batch_size}

    return run


def monai_pass(
    network: nn.Module, normalised: torch.Tensor, amp: bool, sw_batch: int = 1, threads: int | None = None
) -> Callable[[Path, Stopwatch], dict[str, Any]]:
    """MONAI's sliding-window network pass over the normalised image."""
    from monai.inferers import sliding_window_inference

    def run(path: Path, stopwatch: Stopwatch) -> dict[str, Any]:
        started = time.perf_counter()
        with (
            torch_threads(threads),
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp),
        ):
            sliding_window_inference(
                normalised, (MONAI_ROI, MONAI_ROI), sw_batch, network, overlap=0.25, mode="gaussian"
            )
        return {"seconds": time.perf_counter() - started}

    return run


def monai_network() -> nn.Module:
    from monai.networks.nets import BasicUNet

    torch.manual_seed(0)
    return BasicUNet(
        spatial_dims=2, in_channels=1, out_channels=3, features=MONAI_FEATURES, norm="batch"
    ).eval()


# -- report -------------------------------------------------------------------------------------


def report_flops(bundle: ModelBundle, peer: nn.Module) -> tuple[float, float]:
    """Print both networks' FLOPs and parameters; return FLOPs per pixel (ours, MONAI's)."""
    shape = (1, 1, 512, 512)
    ours_flops = network_flops(bundle.network.eval(), shape) / (512 * 512)
    peer_flops = network_flops(peer, shape) / (512 * 512)
    params = (sum(p.numel() for p in bundle.network.parameters()), sum(p.numel() for p in peer.parameters()))
    print(
        table(
            ["network", "GFLOP per megapixel", "parameters"],
            [
                (f"ours: nuclei (UNet width {bundle.config.base_width}, depth {bundle.config.depth})",
                 f"{ours_flops / 1e3:.2f}", f"{params[0]:,}"),
                (f"MONAI BasicUNet features={MONAI_FEATURES}, batch norm",
                 f"{peer_flops / 1e3:.2f}", f"{params[1]:,}"),
            ],
        )
    )  # fmt: skip
    return ours_flops, peer_flops


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def report_rows(rows: list[Row], reference: Row, size: int, truth: np.ndarray) -> None:
    print(f"\nEnd to end on the {size}x{size} mosaic (median of alternating runs)\n")
    base = median(reference.seconds)
    lines = []
    for row in rows:
        seconds = median(row.seconds)
        ap = row.info.get("ap50")
        lines.append(
            (
                row.name,
                f"{seconds:.1f}",
                f"{seconds / base:.2f}",
                f"{ap:.3f}" if ap is not None else "-",
                " ".join(f"{s:.1f}" for s in row.seconds),
            )
        )
    print(table(["configuration", "seconds", "÷ reference", "AP@0.5 vs truth", "runs (s)"], lines))
    print(f"\nreference: {reference.name.strip()}")


def report_phases(row: Row, flops_per_pixel: float, pixels: int, ceilings: dict[str, float]) -> None:
    total = median(row.seconds)
    names = sorted({name for phases in row.phases for name in phases})
    seconds = {name: median([phases.get(name, 0.0) for phases in row.phases]) for name in names}
    other = total - sum(seconds.values())
    lines = [(name, f"{value:.2f}", f"{value / total:.0%}") for name, value in seconds.items()]
    lines.append(("tiling, blending, padding, bookkeeping", f"{other:.2f}", f"{other / total:.0%}"))
    lines.sort(key=lambda line: -float(line[1]))
    print(f"\nWhere the time goes: {row.name} (median {total:.1f} s)\n")
    print(table(["phase", "seconds", "share"], lines))
    network = seconds.get("network", 0.0)
    estimate = seconds.get("size estimate (all of it)", 0.0)
    outside = total - network - estimate
    print(f"\noutside the network (size estimate apart): {outside:.1f} s = {outside / total:.0%}")
    if "scale 1" in row.name and network:  # the network saw exactly the image's pixels
        precision = "bf16" if row.info.get("amp") else "fp32"
        useful = flops_per_pixel * pixels / network
        print(
            f"network {precision}: {useful / 1e9:.0f} GFLOP/s counting each image pixel once (tile "
            f"overlaps not counted) = {useful / ceilings[precision]:.0%} of the {precision} matmul ceiling"
        )


def gpu_section(bundle: ModelBundle, image: np.ndarray, repeats: int) -> None:
    if not torch.cuda.is_available():
        print("\nGPU: skipped (no CUDA device: torch.cuda.is_available() is False)")
        return
    from monai.inferers import sliding_window_inference

    device = torch.device("cuda")
    segmenter = Segmenter(bundle, InferenceConfig(device="cuda", diameter=20))
    normalised = segmenter.normalise(image[None])
    peer = monai_network().to(device)
    tensor = torch.from_numpy(normalised)[None].to(device)
    results: dict[str, list[float]] = {"ours (network + blend, amp)": [], "ours fp32": [], "MONAI fp32": []}
    results["MONAI fp16 autocast"] = []
    fp32 = Segmenter(bundle, InferenceConfig(device="cuda", diameter=20, amp=False))
    for _ in range(repeats + 1):  # the first round warms up cuDNN
        for name, run in (
            (
                "ours (network + blend, amp)",
                lambda: progress.run(segmenter.predict_normalised(normalised)),
            ),
            ("ours fp32", lambda: progress.run(fp32.predict_normalised(normalised))),
            ("MONAI fp32", lambda: monai_cuda(sliding_window_inference, peer, tensor, False)),
            ("MONAI fp16 autocast", lambda: monai_cuda(sliding_window_inference, peer, tensor, True)),
        ):
            torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            torch.cuda.synchronize()
            results[name].append(time.perf_counter() - started)
    print(f"\nGPU: {torch.cuda.get_device_name(0)}, network pass over the normalised image\n")
    print(table(["configuration", "seconds"], [(k, f"{median(v[1:]):.2f}") for k, v in results.items()]))


def monai_cuda(inferer: Callable[..., Any], network: nn.Module, tensor: torch.Tensor, amp: bool) -> None:
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16, enabled=amp):
        inferer(tensor, (MONAI_ROI, MONAI_ROI), 4, network, overlap=0.25, mode="gaussian")


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="mosaic edge in pixels (default 4096)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument(
        "--monai-one-thread-only",
        action="store_true",
        help="skip MONAI on all torch threads (on a busy machine several times slower than on one)",
    )
    parser.add_argument(
        "--part",
        choices=["headline", "ablations", "all"],
        default="all",
        help="headline: ours, before and MONAI; ablations: ours with each optimisation off",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    ceilings = {"fp32": matmul_throughput(torch.float32), "bf16": matmul_throughput(torch.bfloat16)}
    print(
        f"large-matmul ceiling: fp32 {ceilings['fp32'] / 1e9:.0f} GFLOP/s, "
        f"bf16 {ceilings['bf16'] / 1e9:.0f} GFLOP/s\n"
    )
    bundle = load_model(resolve_model("nuclei"))
    peer = monai_network()
    flops_per_pixel, _ = report_flops(bundle, peer)

    image, truth = nuclei_mosaic(args.size)
    diameter = bundle.preprocess.object_diameter  # scale 1: the same pixels as MONAI sees
    normalised = torch.from_numpy(Segmenter(bundle, InferenceConfig(device="cpu")).normalise(image[None]))[
        None
    ]
    off = {"tile_layout": previous_tile_layout}
    scale_one = Row(f"ours, default, diameter {diameter:g} (scale 1)", ours(bundle, diameter=diameter))
    headline = [
        Row("ours, default (object size estimated)", ours(bundle)),
        scale_one,
        Row(
            "before this work (all of the optimisations below off)",
            ours(bundle, Before, diameter=diameter, amp=False, batch_size=4, tile_size=512, **off),
        ),
        Row(
            f"MONAI sliding window (roi {MONAI_ROI}), network only, fp32, 1 torch thread",
            monai_pass(peer, normalised, False, threads=1),
        ),
        Row(
            "MONAI sliding window, network only, bf16 autocast, 1 torch thread",
            monai_pass(peer, normalised, True, threads=1),
        ),
    ]
    if not args.monai_one_thread_only:  # MONAI's default; slow whenever another process runs
        headline.insert(
            3,
            Row(
                f"MONAI sliding window, network only, fp32, {torch.get_num_threads()} torch threads",
                monai_pass(peer, normalised, False),
            ),
        )
    ablations = [
        scale_one,
        Row("  - without bf16 (fp32)", ours(bundle, diameter=diameter, amp=False)),
        Row("  - without channels-last", ours(bundle, Contiguous, diameter=diameter)),
        Row("  - without batch-norm folding", ours(bundle, Unfolded, diameter=diameter)),
        Row("  - tiles one at a time (operators threaded)", ours(bundle, OneTileAtATime, diameter=diameter)),
        Row("  - batches of 4 tiles", ours(bundle, diameter=diameter, batch_size=4)),
        Row("  - fixed-stride tiles", ours(bundle, diameter=diameter, **off)),
        Row("  - tiles of 512", ours(bundle, diameter=diameter, tile_size=512)),
        Row("  - whole-image watershed", ours(bundle, WholeImageWatershed, diameter=diameter)),
        Row("  - 1 torch thread", ours(bundle, diameter=diameter, threads=1)),
    ]
    rows = {"headline": headline, "ablations": ablations, "all": [*headline, *ablations[1:]]}[args.part]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mosaic.tif"
        tifffile.imwrite(path, image, photometric="minisblack")
        signal.signal(signal.SIGTERM, _interrupt)  # `timeout` still gets the tables of the runs so far
        try:
            for repeat in range(args.repeats):
                for row in rows:
                    stopwatch = Stopwatch()
                    result = row.run(path, stopwatch)
                    row.seconds.append(result["seconds"])
                    row.phases.append(stopwatch.phase_seconds())
                    if repeat == 0 and "labels" in result:
                        ap = average_precision(truth, result["labels"], thresholds=[0.5])[0]
                        row.info.update(ap50=float(ap), amp=result["amp"])
                    print(f"  run {repeat + 1}: {row.name}: {result['seconds']:.1f} s", flush=True)
        except KeyboardInterrupt:
            print("stopped early: tables of the runs so far")
    rows = [row for row in rows if row.seconds]
    peers = [row for row in rows if row.name.startswith("MONAI") and "fp32" in row.name]
    reference = min(peers, key=lambda row: median(row.seconds)) if peers else rows[0]
    report_rows(rows, reference, args.size, truth)
    for row in rows:
        if row.name.startswith("ours, default"):
            report_phases(row, flops_per_pixel, image.size, ceilings)
    after = {"fp32": matmul_throughput(torch.float32), "bf16": matmul_throughput(torch.bfloat16)}
    print(
        f"\nmatmul ceiling again after the runs: fp32 {after['fp32'] / 1e9:.0f}, "
        f"bf16 {after['bf16'] / 1e9:.0f} GFLOP/s"
    )
    gpu_section(bundle, image, args.repeats)


if __name__ == "__main__":
    main()
