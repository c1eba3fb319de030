from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest


def nuclei_stack(planes: int = 6, size: int = 64, seed: int = 0) -> np.ndarray:
    """A (Z, Y, X) uint16 stack of bright discs (~16 px across) that drift from plane to plane."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(12, size - 12, (max(2, size * size // 900), 2))
    stack = rng.integers(80, 120, (planes, size, size)).astype(np.uint16)
    for z in range(planes):
        for cy, cx in centres:
            stack[z][(yy - cy - z * 0.7) ** 2 + (xx - cx) ** 2 < 64] += 900
    return stack


@pytest.fixture(scope="session")
def make_stack() -> Callable[..., np.ndarray]:
    """Synthetic nuclei stacks: ``make_stack(planes=6, size=64, seed=0)``."""
    return nuclei_stack
