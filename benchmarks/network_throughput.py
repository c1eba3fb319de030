"""How close the network runs to the compute ceiling of the CPU it runs on, and which tile and batch suit it.

Prints Markdown tables; not a timed test.  All in one process, configurations
alternating within every repeat:

1. the ceiling: large square matrix products, fp32 and bf16;
2. one forward pass of the default (nuclei) model on one thread (``segment``
   runs each tile on one core) per layout and precision, as achieved FLOP/s and
   as a fraction of the one-thread matmul ceiling of its precision;
3. where the network's time goes, per operator (torch.profiler): the
   convolutions against the memory-bound layers between them;
4. threads: one tile on one thread, one tile with its operators split across
   all threads, and one tile per thread at once (``segment``'s way), against the
   ceiling on as many threads;
5. tile size x batch: network + blending over a 4096 x 4096 mosaic as
   ``segment`` runs them, with the tiles each setting needs (repeats - 1 runs);
6. ``compile``: ``torch.compile`` (first call and steady state);
7. ``monai``: MONAI's ``sliding_window_inference`` roi size and sw_batch_size
   on a 2048 x 2048 mosaic, to pick MONAI's fastest setting for
   ``segment_speed.py``.

CPU only: GPU figures are in ``segment_speed.py`` and ``finetune_speed.py``.

Usage: python benchmarks/network_throughput.py [--repeats 3] [--threads N]
[--sections network,threads,tiles,compile,monai]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from _common import machine, matmul_throughput, median, network_flops, nuclei_mosaic, table, torch_threads
from napari_unet.core import progress
from napari_unet.core.config import InferenceConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.segmenter import Segmenter, inference_network
from napari_unet.core.segmentation.tiling import tile_layout


def forward_seconds(network: nn.Module, batch: int, edge: int, amp: bool, channels_last: bool) -> float:
    """Seconds of one forward pass (after a warm-up pass)."""
    x = torch.randn(batch, 1, edge, edge)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        network(x)
        started = time.perf_counter()
        network(x)
        return time.perf_counter() - started


def variants(network: nn.Module) -> dict[str, tuple[nn.Module, bool, bool]]:
    """name -> (network, amp, channels_last)."""
    plain = copy.deepcopy(network).eval()
    plain_last = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    folded_last = inference_network(network).to(memory_format=torch.channels_last)
    return {
        "fp32, NCHW, batch norm separate": (plain, False, False),
        "fp32, channels-last, batch norm separate": (plain_last, False, True),
        "fp32, channels-last, batch norm folded": (folded_last, False, True),
        "bf16, NCHW, batch norm separate": (plain, True, False),
        "bf16, channels-last, batch norm separate": (plain_last, True, True),
        "bf16, channels-last, batch norm folded (default)": (folded_last, True, True),
    }


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median seconds of each run, running them in turn ``repeats`` times."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds[name].append(run())
    return {name: median(values) for name, values in seconds.items()}


def layouts_and_precisions(network: nn.Module, edge: int, repeats: int, ceilings: dict[str, float]) -> None:
    flops = network_flops(network.eval(), (1, 1, edge, edge))
    runs = {
        name: (lambda n=net, a=amp, c=last: forward_seconds(n, 1, edge, a, c))
        for name, (net, amp, last) in variants(network).items()
    }
    seconds = alternate(runs, repeats)
    rows = []
    for name, value in seconds.items():
        precision = "bf16" if name.startswith("bf16") else "fp32"
        achieved = flops / value
        rows.append(
            (name, f"{value * 1000:.0f}", f"{achieved / 1e9:.0f}", f"{achieved / ceilings[precision]:.0%}")
        )
    print(
        f"\nOne {edge}x{edge} tile, batch 1 ({flops / 1e9:.1f} GFLOP), {torch.get_num_threads()} thread(s), "
        f"median of {repeats}\n"
    )
    print(table(["network", "ms", "GFLOP/s", "of the matmul ceiling (same precision)"], rows))


def operator_profile(network: nn.Module, edge: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    groups = {
        "convolution (transposed ones included)": (
            "convolution",
            "conv",
            "mkldnn_convolution",
            "_convolution",
        ),
        "batch norm": ("batch_norm", "native_batch_norm"),
        "ReLU": ("relu", "clamp_min"),
        "concatenation (skips)": ("cat",),
        "max pooling": ("max_pool",),
    }
    print(f"\nWhere the network's time goes, one {edge}x{edge} tile (torch.profiler, self CPU time)\n")
    header = ["operator"]
    shares: dict[str, dict[str, float]] = {}
    for name, (net, amp, last) in variants(network).items():
        if "NCHW" in name:  # the layout the CPU path never uses
            continue
        x = torch.randn(1, 1, edge, edge).contiguous(
            memory_format=torch.channels_last if last else torch.contiguous_format
        )
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            net(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(2):
                    net(x)
        totals: dict[str, float] = {}
        for event in prof.key_averages():
            key = event.key.removeprefix("aten::")
            group = next((g for g, names in groups.items() if any(key.startswith(n) for n in names)), "other")
            totals[group] = totals.get(group, 0.0) + event.self_cpu_time_total
        whole = sum(totals.values())
        shares[name] = {group: value / whole for group, value in totals.items()}
        header.append(name)
    rows = [
        (group, *(f"{shares[name].get(group, 0.0):.0%}" for name in shares)) for group in [*groups, "other"]
    ]
    print(table(header, rows))


def tiles_and_batches(
    bundle: ModelBundle, size: int, repeats: int, edges: list[int], batches: list[int]
) -> None:
    """Network and blending over a ``size``² mosaic, as ``segment`` runs them, per tile size and batch."""
    image, _ = nuclei_mosaic(size)
    normalised = Segmenter(bundle, InferenceConfig(device="cpu")).normalise(image[None])
    runs = {}
    for edge in edges:
        for batch in batches:
            segmenter = Segmenter(bundle, InferenceConfig(device="cpu", tile_size=edge, batch_size=batch))

            def run(s: Segmenter = segmenter) -> float:
                started = time.perf_counter()
                progress.run(s.predict_normalised(normalised))
                return time.perf_counter() - started

            runs[(edge, batch)] = run
    seconds = alternate({str(key): run for key, run in runs.items()}, repeats)
    rows = []
    for edge, batch in runs:
        tile, starts = tile_layout(size, edge, 64, bundle.config.size_multiple)
        overhead = (len(starts) * tile) ** 2 / size**2
        value = seconds[str((edge, batch))]
        rows.append(
            (edge, batch, f"{len(starts)}x{len(starts)} of {tile}", f"{overhead:.2f}", f"{value:.1f}",
             f"{value / (overhead * size * size / 1e6):.3f}")
        )  # fmt: skip
    print(
        f"\nTile size and batch: network + blending over a {size}² mosaic (bf16 where native, tiles in "
        f"parallel, one per torch thread), median of {repeats}\n"
    )
    print(
        table(
            ["tile_size", "batch", "tiles (overlap 64)", "tile pixels ÷ image pixels", "seconds",
             "s per MP of tiles"],
            rows,
        )
    )  # fmt: skip


def threads(network: nn.Module, edge: int, repeats: int, ceilings: dict[int, dict[str, float]]) -> None:
    """One tile on one thread, one tile split across all threads, one tile per thread at once."""
    from concurrent.futures import ThreadPoolExecutor

    folded = inference_network(network).to(memory_format=torch.channels_last)
    flops = network_flops(network.eval(), (1, 1, edge, edge))
    count = torch.get_num_threads()
    pool = ThreadPoolExecutor(count, initializer=torch.set_num_threads, initargs=(1,))
    runs: dict[str, Callable[[], float]] = {}
    for amp in (True, False):
        precision = "bf16" if amp else "fp32"

        def one(a: bool = amp) -> float:
            with torch_threads(1):
                return forward_seconds(folded, 1, edge, a, True)

        def split(a: bool = amp) -> float:
            return forward_seconds(folded, 1, edge, a, True)

        def parallel(a: bool = amp) -> float:
            x = torch.randn(1, 1, edge, edge).contiguous(memory_format=torch.channels_last)

            def forward(_: int) -> None:
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a):
                    folded(x)

            list(pool.map(forward, range(count)))  # warm-up on every worker
            started = time.perf_counter()
            list(pool.map(forward, range(count)))
            return (time.perf_counter() - started) / count  # per tile

        runs[f"{precision}: 1 tile, 1 thread|1"] = one
        runs[f"{precision}: 1 tile, operators split across {count} threads|{count}"] = split
        runs[f"{precision}: {count} tiles at once, 1 thread each (segment's way)|{count}"] = parallel
    seconds = alternate(runs, repeats)
    pool.shutdown()
    rows = []
    for key, value in seconds.items():
        name, cores = key.split("|")
        precision = name[:4]
        achieved = flops / value
        ceiling = ceilings[int(cores)][precision]
        rows.append((name, f"{value * 1000:.0f}", f"{achieved / 1e9:.0f}", f"{achieved / ceiling:.0%}"))
    print(f"\nThreads: {edge}x{edge} tiles, median of {repeats}\n")
    print(table(["setting", "ms per tile", "GFLOP/s", "of the matmul ceiling on as many threads"], rows))


def compiled(network: nn.Module, edge: int, repeats: int) -> None:
    folded = inference_network(network).to(memory_format=torch.channels_last)
    started = time.perf_counter()
    fast = torch.compile(folded)
    first = None
    x = torch.randn(1, 1, edge, edge).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast(x)
        first = time.perf_counter() - started
    seconds = alternate(
        {
            "eager": lambda: forward_seconds(folded, 1, edge, True, True),
            "torch.compile": lambda: forward_seconds(fast, 1, edge, True, True),
        },
        repeats,
    )
    print(f"\ntorch.compile (inductor), bf16, one {edge}x{edge} tile, median of {repeats}\n")
    print(
        table(
            ["network", "first call (s)", "steady state (ms)"],
            [("eager", "-", f"{seconds['eager'] * 1000:.0f}"),
             ("torch.compile", f"{first:.1f}", f"{seconds['torch.compile'] * 1000:.0f}")],
        )
    )  # fmt: skip


def monai_sweep(repeats: int) -> None:
    from monai.inferers import sliding_window_inference

    from segment_speed import monai_network

    network = monai_network()
    image, _ = nuclei_mosaic(2048)
    x = torch.from_numpy(image.astype("float32") / 4000)[None, None]
    runs = {}
    for roi in (256, 512, 1024):
        for batch in (1, 4):

            def run(r: int = roi, b: int = batch) -> float:
                started = time.perf_counter()
                with torch.inference_mode():
                    sliding_window_inference(x, (r, r), b, network, overlap=0.25, mode="gaussian")
                return time.perf_counter() - started

            runs[f"roi {roi}, sw_batch_size {batch}"] = run
    seconds = alternate(runs, repeats)
    print(f"\nMONAI sliding window (fp32, overlap 0.25, gaussian) on 2048², median of {repeats}\n")
    print(table(["setting", "seconds"], [(name, f"{value:.1f}") for name, value in seconds.items()]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    parser.add_argument(
        "--edge", type=int, default=736, help="tile edge for tables 2-4 (default 736: a 4096² image's tiles)"
    )
    parser.add_argument(
        "--size", type=int, default=4096, help="mosaic edge for the tile table (default 4096)"
    )
    parser.add_argument(
        "--sections",
        default="network,threads,tiles",
        help="comma-separated, of network, threads, tiles, compile (slow first call), monai (MONAI's "
        "roi and batch settings); default network,threads,tiles",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    count = torch.get_num_threads()
    ceilings = {}
    for threads_used in sorted({1, count}):
        with torch_threads(threads_used):
            ceilings[threads_used] = {
                "fp32": matmul_throughput(torch.float32),
                "bf16": matmul_throughput(torch.bfloat16),
            }
        print(
            f"large-matmul ceiling on {threads_used} thread(s): fp32 {ceilings[threads_used]['fp32'] / 1e9:.0f} "
            f"GFLOP/s, bf16 {ceilings[threads_used]['bf16'] / 1e9:.0f} GFLOP/s"
        )
    bundle = load_model(resolve_model("nuclei"))
    network = bundle.network.eval()
    sections = set(args.sections.split(","))
    if "network" in sections:
        with torch_threads(1):  # segment runs each tile on one core
            layouts_and_precisions(network, args.edge, args.repeats, ceilings[1])
            operator_profile(network, args.edge)
    if "threads" in sections:
        threads(network, args.edge, args.repeats, ceilings)
    if "tiles" in sections:
        tiles_and_batches(bundle, args.size, max(1, args.repeats - 1), [384, 512, 768, 1024], [1, 2])
    if "compile" in sections:
        compiled(network, args.edge, args.repeats)
    if "monai" in sections:
        monai_sweep(args.repeats)
    after = {"fp32": matmul_throughput(torch.float32), "bf16": matmul_throughput(torch.bfloat16)}
    print(
        f"\nmatmul ceiling on {count} thread(s) again after the runs: fp32 {after['fp32'] / 1e9:.0f}, "
        f"bf16 {after['bf16'] / 1e9:.0f} GFLOP/s"
    )


if __name__ == "__main__":
    main()
