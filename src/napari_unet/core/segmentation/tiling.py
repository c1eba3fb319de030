"""Tiled prediction: where tiles go, how their overlaps blend, and running them over a thread pool.

Tiles start on multiples of the network's pooling size and are blended with
linear ramps over their overlaps, so a tiled prediction matches an untiled one
up to the network's border effects within the overlap (see the tests).  Tiles
are spread evenly so that no pixel is computed more often than the overlap
requires.  On CPU one tile runs per torch thread, each single-threaded: no
synchronisation between cores after each layer, and each core keeps its own
tile's working set in its own cache (``benchmarks/segment_speed.py``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing

import numpy as np
import torch
from numpy.typing import NDArray

from napari_unet.core.progress import Progress

Forward = Callable[[NDArray[np.float32]], NDArray[np.float32]]
"""Network outputs (N, H, Y, X) of a batch of normalised tiles (N, C, Y, X)."""

Box = tuple[int, int]
"""Top-left corner (y, x) of a tile."""


def tile_layout(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, list[int]]:
    """Edge and start offsets of the fewest tiles covering ``size`` pixels.

    Parameters
    ----------
    size : int
        Pixels to cover, a multiple of ``multiple``.
    tile : int
        Largest tile edge.
    overlap : int
        Least overlap between neighbouring tiles.
    multiple : int
        Tile edges and starts are multiples of this (the network's pooling grid).

    Returns
    -------
    (edge, starts)
        The tile edge (at most ``max(tile, multiple)``, rounded up to
        ``multiple``; shrunk as far as the overlap allows, so no pixel is
        computed more often than needed) and the evenly spread start offsets.

    """
    units, most = size // multiple, max(1, math.ceil(tile / multiple))
    if units <= most:
        return size, [0]
    shared = min(math.ceil(overlap / multiple), most - 1)
    count = math.ceil((units - shared) / (most - shared))
    edge = math.ceil((units + (count - 1) * shared) / count)
    starts = [round(i * (units - edge) / (count - 1)) * multiple for i in range(count)]
    return edge * multiple, starts


def blend_ramp(length: int, overlap: int, left: bool, right: bool) -> NDArray[np.float32]:
    """Blending weights along one tile edge: 1 inside, linear ramps over overlaps with a neighbour.

    Parameters
    ----------
    length : int
        Tile edge in pixels.
    overlap : int
        Pixels shared with a neighbour.
    left, right : bool
        Whether the tile has a neighbour before / after it (the image's own
        borders keep full weight).

    Returns
    -------
    ndarray of float32, shape (length,)
        Weights in ``(0, 1]``; the ramps of two neighbours sum to 1 over an
        overlap of exactly ``overlap`` pixels.

    """
    weights = np.ones(length, np.float32)
    ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / max(overlap, 1)
    if overlap:
        if left:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if right:
            weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
    return weights


def thread_pool(workers: int, threads: int) -> ThreadPoolExecutor:
    """``workers`` threads sharing ``threads`` torch threads.

    Each worker sets torch's thread count, which is process-wide: the caller
    restores ``torch.set_num_threads(threads)`` after the pool is shut down.
    """
    share = max(1, threads // workers)
    return ThreadPoolExecutor(
        workers, thread_name_prefix="napari-unet", initializer=lambda: torch.set_num_threads(share)
    )


def predict_tiled(
    image: NDArray[np.float32],
    forward: Forward,
    heads: int,
    tile: int,
    overlap: int,
    multiple: int,
    batch_size: int,
    workers: int,
) -> Generator[Progress, None, NDArray[np.float32]]:
    """Blend ``forward`` over overlapping tiles of a normalised image.

    Parameters
    ----------
    image : ndarray of float32, shape (C, Y, X)
    forward : callable
        Outputs of a batch of tiles (see :data:`Forward`).
    heads : int
        Output channels of ``forward``.
    tile, overlap : int
        Largest tile edge and least overlap (see :func:`tile_layout`).
    multiple : int
        The network's size multiple: the image is padded to it, tiles start on it.
    batch_size : int
        Tiles per call of ``forward``.
    workers : int
        Calls of ``forward`` running at once (threads; 1 runs them in the caller's thread).

    Yields
    ------
    Progress
        One per batch of tiles.

    Returns
    -------
    ndarray of float32, shape (heads, Y, X)

    """
    _, height, width = image.shape
    pad_y, pad_x = -height % multiple, -width % multiple
    if pad_y or pad_x:
        mode = "reflect" if pad_y < height and pad_x < width else "constant"
        image = np.pad(image, ((0, 0), (0, pad_y), (0, pad_x)), mode=mode)
    padded_h, padded_w = image.shape[1:]
    tile_h, starts_y = tile_layout(padded_h, tile, overlap, multiple)
    tile_w, starts_x = tile_layout(padded_w, tile, overlap, multiple)
    boxes = [(y, x) for y in starts_y for x in starts_x]
    if len(boxes) == 1:
        yield Progress(0, 1, "network")
        out = forward(image[None])[0]
        yield Progress(1, 1, "network")
        return out[:, :height, :width]
    total = np.zeros((heads, padded_h, padded_w), np.float32)
    weight = np.zeros((padded_h, padded_w), np.float32)
    chunks = [boxes[first : first + batch_size] for first in range(0, len(boxes), batch_size)]

    def tiles(chunk: list[Box]) -> NDArray[np.float32]:
        return np.ascontiguousarray(np.stack([image[:, y : y + tile_h, x : x + tile_w] for y, x in chunk]))

    done = 0
    with closing(_predict_chunks(chunks, tiles, forward, workers)) as predictions:
        for chunk, predicted in predictions:
            for (y, x), tile_out in zip(chunk, predicted, strict=True):
                w = np.outer(
                    blend_ramp(tile_h, overlap, y > 0, y + tile_h < padded_h),
                    blend_ramp(tile_w, overlap, x > 0, x + tile_w < padded_w),
                )
                total[:, y : y + tile_h, x : x + tile_w] += tile_out * w
                weight[y : y + tile_h, x : x + tile_w] += w
            done += len(chunk)
            yield Progress(done, len(boxes), f"tile {done}/{len(boxes)}")
    total /= weight
    return total[:, :height, :width]


def _predict_chunks(
    chunks: list[list[Box]],
    tiles: Callable[[list[Box]], NDArray[np.float32]],
    forward: Forward,
    workers: int,
) -> Generator[tuple[list[Box], NDArray[np.float32]], None, None]:
    """Outputs of each chunk of tile positions, in order, with up to ``workers`` chunks running at once."""
    workers = min(workers, len(chunks))
    if workers <= 1:
        for chunk in chunks:
            yield chunk, forward(tiles(chunk))
        return
    threads = torch.get_num_threads()
    pool = thread_pool(workers, threads)
    pending: deque[tuple[list[Box], Future[NDArray[np.float32]]]] = deque()
    try:
        for chunk in chunks:
            pending.append((chunk, pool.submit(forward, tiles(chunk))))
            if len(pending) > workers:  # every worker busy and one chunk queued: hand one back
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()
    finally:  # also when the caller stops early: drop queued chunks, wait for running ones
        pool.shutdown(wait=True, cancel_futures=True)
        torch.set_num_threads(threads)  # the workers changed torch's process-wide default
