"""Shared pieces of the speed benchmarks: test input, hardware ceiling, machine, tables, timers.

Not a benchmark itself.  The input is real data: a mosaic of DSB 2018 validation
images (``$NAPARI_UNET_DATA`` or ``../shared/data`` next to the repository).
"""

from __future__ import annotations

import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import torch

DATA = Path(os.environ.get("NAPARI_UNET_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
NUCLEI_VAL = DATA / "nuclei-dsb2018" / "val"
PHASE_VAL = DATA / "cells-usiigaci" / "val"


def nuclei_mosaic(size: int) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` uint16 mosaic of DSB fluorescence images and its instance labels.

    Images are packed row by row (the last ones cropped), each stretched to
    its own range first, as a microscope stitching tiles of one slide would.
    Brightfield and histology images (bright background) are left out: the
    nuclei model is for fluorescence.  Label ids are made unique across tiles.
    """
    tiles = []
    for path in sorted((NUCLEI_VAL / "images").glob("*.tif")):
        image = tifffile.imread(path).astype(np.float32)
        if image.ndim == 2 and image.mean() < 0.5 * image.max():
            labels = tifffile.imread(NUCLEI_VAL / "labels" / path.name).astype(np.int32)
            tiles.append(((image - image.min()) / max(float(np.ptp(image)), 1.0), labels))
    if not tiles:
        raise SystemExit(f"no DSB validation images found under {NUCLEI_VAL} (set NAPARI_UNET_DATA)")
    image_out = np.zeros((size, size), np.float32)
    labels_out = np.zeros((size, size), np.int32)
    y = x = row_height = index = next_id = 0
    while y < size:
        image, labels = tiles[index % len(tiles)]
        index += 1
        h, w = min(image.shape[0], size - y), min(image.shape[1], size - x)
        image_out[y : y + h, x : x + w] = image[:h, :w]
        crop = labels[:h, :w]
        labels_out[y : y + h, x : x + w] = np.where(crop > 0, crop + next_id, 0)
        next_id += int(labels.max())
        row_height = max(row_height, h)
        x += w
        if x >= size:
            x, y, row_height = 0, y + row_height, 0
    return (image_out * 4000).astype(np.uint16), labels_out


def matmul_throughput(dtype: torch.dtype, sizes: Sequence[int] = (2048, 4096), repeats: int = 3) -> float:
    """Best FLOP/s of square matrix products at ``dtype``: the compute ceiling on torch's threads.

    The better of one product split across all threads and one single-threaded
    product per thread at once (the way ``segment`` runs tiles; on a busy
    machine it suffers less from the threads waiting for each other).
    """
    threads = torch.get_num_threads()
    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b  # warm-up (allocations, kernel selection)
        for _ in range(repeats):
            started = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - started))
        if threads > 1:
            with ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                list(pool.map(torch.mm, [a] * threads, [b] * threads))
                for _ in range(repeats):
                    started = time.perf_counter()
                    list(pool.map(torch.mm, [a] * threads, [b] * threads))
                    best = max(best, threads * 2 * n**3 / (time.perf_counter() - started))
            torch.set_num_threads(threads)
    return best


def network_flops(network: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """FLOPs (2 per multiply-add) of one forward pass on a zero tensor of ``shape``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        network(torch.zeros(shape))
    return int(counter.get_total_flops())


def machine() -> str:
    """CPU model, cores and torch threads, for the table captions."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = [
        name
        for name, probe in (("avx512_bf16", "_is_avx512_bf16_supported"), ("amx", "_is_amx_tile_supported"))
        if getattr(torch.cpu, probe, lambda: False)()
    ]
    return (
        f"{model}, {os.cpu_count()} cores ({torch.backends.cpu.get_cpu_capability()}"
        f"{', ' + ', '.join(flags) if flags else ''}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def spread(values: Sequence[float]) -> str:
    """``mean (min–max)`` to three decimals, for scores over seeds or draws."""
    return f"{statistics.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def median(values: Sequence[float]) -> float:
    """Median, for repeated timings (robust to one disturbed run)."""
    return statistics.median(values)


@contextmanager
def torch_threads(count: int | None):
    """Run a block with ``count`` torch threads (``None``: unchanged)."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Stopwatch:
    """Time per named phase from wrapped functions, also when they run in worker threads.

    ``seconds`` holds each phase's own thread time (time in wrapped functions it
    calls on the same thread is not counted twice); ``wall`` the wall-clock time
    during which at least one call of the phase was running (tiles computed on
    two threads at once count once); ``worker`` the phases that ran off the main
    thread.  While an ``opaque`` phase runs, everything it calls (on any thread)
    is its own.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self.worker: set[str] = set()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._active: dict[str, tuple[int, float]] = {}
        self._opaque = 0

    def _stack(self) -> list[float]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def _enter(self, name: str) -> None:
        with self._lock:
            count, since = self._active.get(name, (0, time.perf_counter()))
            self._active[name] = (count + 1, since)

    def _leave(self, name: str, own: float) -> None:
        with self._lock:
            count, since = self._active[name]
            if count == 1:
                del self._active[name]
                self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - since
            else:
                self._active[name] = (count - 1, since)
            self.seconds[name] = self.seconds.get(name, 0.0) + own
            if threading.current_thread() is not threading.main_thread():
                self.worker.add(name)

    def wrap(self, name: str, function: Callable[..., Any], opaque: bool = False) -> Callable[..., Any]:
        """``function``, timed as phase ``name``."""

        @wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._opaque:
                return function(*args, **kwargs)
            stack = self._stack()
            stack.append(0.0)
            self._enter(name)
            self._opaque += opaque
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self._opaque -= opaque
                children = stack.pop()
                self._leave(name, elapsed - children)
                if stack:
                    stack[-1] += elapsed

        return timed

    def phase_seconds(self) -> dict[str, float]:
        """Wall-clock seconds per phase: own time on the main thread, wall time for worker phases."""
        return {name: self.wall[name] if name in self.worker else own for name, own in self.seconds.items()}

    @contextmanager
    def patch(self, owner: Any, attribute: str, name: str, opaque: bool = False):
        """Time ``owner.attribute`` (a module function or an object's method) as ``name`` within a block."""
        original = getattr(owner, attribute)
        setattr(owner, attribute, self.wrap(name, original, opaque))
        try:
            yield
        finally:
            setattr(owner, attribute, original)
